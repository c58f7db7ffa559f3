"""Throughput and peak memory of `lora-sched train` against a bare diffusers + peft loop.

Both train the same LoRA (builtin:tiny-sd, builtin:shapes, resolution 64, batch 2, rank 4, AdamW,
cosine with warmup, UNet only, latents and text embeddings cached in batches of 8) in fresh
processes, alternating. Throughput is taken from per-step wall-clock stamps each process writes
(lora-sched: the `seconds` column of train_log.csv; the bare loop: the same stamps), over the steps
after the first `--skip`, so start-up (imports, model build, latent caching) is left out; a run's
time per step is the median of its step-to-step intervals and the result the best round of each
(robust to other processes on a shared machine); `--threads` sets torch's threads in both; peak
memory is each child's max RSS (os.wait4). Targets: speed ratio >= 0.95,
memory ratio within 5%.

    python bench/bench_train.py [--rounds 3] [--steps 300] [--skip 20]

`python bench/bench_train.py --bare STEPS OUTDIR` runs the baseline loop alone.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOLUTION, BATCH, RANK, ALPHA, LR, WARMUP, SEED = 64, 2, 4, 4.0, 1e-3, 0.1, 42


def bare_loop(steps: int, out_dir: str) -> None:
    """The baseline: what a person writes by hand with diffusers + peft (no accelerate, no logging)."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from lora_sched.train.data import builtin_shapes
    from lora_sched.train.model import build_tiny_sd

    torch.manual_seed(SEED)
    model = build_tiny_sd()
    for part in (model.unet, model.vae, model.text_encoder):
        part.requires_grad_(False)
    examples = builtin_shapes()
    pixels = torch.stack(
        [
            torch.from_numpy(np.asarray(e.load(RESOLUTION, RESOLUTION), dtype=np.float32)).permute(2, 0, 1)
            for e in examples
        ]
    )
    ids = model.tokenizer(
        [e.caption for e in examples], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        chunks = range(0, n_images := len(examples), 8)
        latents = torch.cat([model.vae.encode(pixels[i : i + 8] / 127.5 - 1).latent_dist.mean for i in chunks])
        latents = latents * model.vae.config.scaling_factor
        text = torch.cat([model.text_encoder(ids[i : i + 8])[0] for i in range(0, n_images, 8)])
    model.unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in model.unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR)
    sched = get_scheduler("cosine", opt, num_warmup_steps=math.floor(WARMUP * steps), num_training_steps=steps)
    n = len(examples)
    perm = torch.randperm(n)
    stamps = []
    t0 = time.perf_counter()
    for step in range(steps):
        pos = (step * BATCH) % n
        if pos == 0:
            perm = torch.randperm(n)
        rows = perm[pos : pos + BATCH]
        lat = latents[rows]
        noise = torch.randn_like(lat)
        t = torch.randint(0, 1000, (lat.shape[0],))
        pred = model.unet(model.noise_scheduler.add_noise(lat, noise, t), t, text[rows]).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter() - t0)
    Path(out_dir, "stamps.txt").write_text("\n".join(f"{x:.6f}" for x in stamps), encoding="utf-8")
    save_file(
        {k: v.contiguous() for k, v in get_peft_model_state_dict(model.unet).items()}, f"{out_dir}/bare.safetensors"
    )


def _config(path: Path, steps: int, out_dir: Path) -> Path:
    import tomli_w

    flat = {
        "pretrained_model_name_or_path": "builtin:tiny-sd",
        "train_data_dir": "builtin:shapes",
        "resolution": RESOLUTION,
        "train_batch_size": BATCH,
        "network_dim": RANK,
        "network_alpha": ALPHA,
        "learning_rate": LR,
        "text_encoder_lr": 0.0,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": WARMUP,
        "max_train_steps": steps,
        "seed": SEED,
        "output_dir": str(out_dir),
    }
    path.write_text(tomli_w.dumps({"training_arguments": flat}), encoding="utf-8")
    return path


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _stamps(name: str, out: Path) -> list[float]:
    if name == "bare":
        return [float(x) for x in (out / "stamps.txt").read_text().split()]
    with open(out / "train_log.csv", newline="", encoding="utf-8") as fh:
        return [float(row["seconds"]) for row in csv.DictReader(fh)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=20, help="first steps left out (warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both (default: torch's)")
    parser.add_argument("--bare", nargs=2, metavar=("STEPS", "OUTDIR"))
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.bare:
        bare_loop(int(args.bare[0]), args.bare[1])
        return

    per_step: dict[str, list[float]] = {"lora-sched": [], "bare": []}
    peak: dict[str, list[float]] = {"lora-sched": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("lora-sched", "bare") if r % 2 == 0 else ("bare", "lora-sched"):
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                if name == "bare":
                    cmd = [sys.executable, __file__, "--bare", str(args.steps), str(out)]
                else:
                    cfg = _config(Path(tmp) / f"c-{r}.toml", args.steps, out)
                    cmd = [sys.executable, "-m", "lora_sched", "train", str(cfg)]
                _, rss = _run(cmd)
                stamps = _stamps(name, out)
                steps = [b - a for a, b in zip(stamps[args.skip - 1 :], stamps[args.skip :])]
                per_step[name].append(statistics.median(steps))
                peak[name].append(rss)
                print(f"round {r}: {name:10s} {1 / per_step[name][-1]:7.1f} steps/s  peak RSS {rss:7.1f} MiB")
    ours, bare = min(per_step["lora-sched"]), min(per_step["bare"])
    mem_ours, mem_bare = max(peak["lora-sched"]), max(peak["bare"])
    print(f"\nthreads: {os.environ.get('OMP_NUM_THREADS', 'torch default')}, {args.rounds} rounds, best of each")
    print(f"lora-sched train: {1 / ours:.1f} steps/s, peak RSS {mem_ours:.0f} MiB")
    print(f"bare loop:        {1 / bare:.1f} steps/s, peak RSS {mem_bare:.0f} MiB")
    print(f"speed ratio (lora-sched / bare, target >= 0.95): {bare / ours:.3f}")
    print(f"memory ratio (lora-sched / bare, target <= 1.05): {mem_ours / mem_bare:.3f}")


if __name__ == "__main__":
    main()

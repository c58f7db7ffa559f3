"""Throughput and peak memory of `lora-sched train` against a bare diffusers + peft loop.

Both train the same LoRA (builtin:tiny-sd or builtin:tiny-sdxl, builtin:shapes, resolution 64, batch
2, rank 4, AdamW, cosine with warmup, UNet only, on the modules sd-scripts' networks.lora wraps,
latents and text embeddings cached in batches of 8)
in fresh processes, alternating. For SDXL the bare loop conditions the UNet as a person would by
hand: StableDiffusionXLPipeline.encode_prompt's embeddings and pooled embeddings, and the size ids
of a 64 x 64 image. Throughput is taken from per-step wall-clock stamps each process writes
(lora-sched: the `seconds` column of train_log.csv; the bare loop: the same stamps), over the steps
after the first `--skip`, so start-up (imports, model build, latent caching) is left out; a run's
time per step is the median of its step-to-step intervals and the result the best round of each
(robust to other processes on a shared machine); `--threads` sets torch's threads in both; peak
memory is each child's max RSS (os.wait4). Targets: speed ratio >= 1.0,
memory ratio <= 1.02. With `--model both`, both built-in models are measured and the ratio of
tiny SDXL's to tiny SD's figures is printed too.

    python bench/bench_train.py [--model builtin:tiny-sd|builtin:tiny-sdxl|both] [--rounds 3] [--steps 300] [--skip 20]

`python bench/bench_train.py --bare STEPS OUTDIR [--model NAME]` runs the baseline loop alone.
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
#: The UNet modules sd-scripts' networks.lora wraps (every Linear / 1x1 conv of the transformer
#: blocks), written by hand in diffusers' names: both loops train the same LoRA.
KOHYA_UNET_MODULES = (
    r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)"
    r"|transformer_blocks\.\d+\.ff\.net\.(0\.proj|2))"
)


def _bare_conditioning(model, captions: list[str]):
    """(text embeddings, extra UNet kwargs per row): SD's last hidden state; SDXL's through its pipeline."""
    import torch

    if not model.is_sdxl:
        ids = model.tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            text = torch.cat([model.text_encoder(ids[i : i + 8])[0] for i in range(0, len(ids), 8)])
        return text, lambda rows: {}
    pipe = model.pipeline()
    with torch.no_grad():
        parts = [
            pipe.encode_prompt(captions[i : i + 8], do_classifier_free_guidance=False)
            for i in range(0, len(captions), 8)
        ]
    text, pooled = torch.cat([p[0] for p in parts]), torch.cat([p[2] for p in parts])
    ids = torch.tensor([[RESOLUTION, RESOLUTION, 0, 0, RESOLUTION, RESOLUTION]], dtype=torch.float32)
    return text, lambda rows: {"added_cond_kwargs": {"text_embeds": pooled[rows], "time_ids": ids.repeat(len(rows), 1)}}


def bare_loop(steps: int, out_dir: str, name: str = "builtin:tiny-sd") -> None:
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
    from lora_sched.train.model import build_builtin

    torch.manual_seed(SEED)
    model = build_builtin(name)
    for part in model.modules().values():
        part.requires_grad_(False)
    examples = builtin_shapes()
    pixels = torch.stack(
        [
            torch.from_numpy(np.asarray(e.load(RESOLUTION, RESOLUTION), dtype=np.float32)).permute(2, 0, 1)
            for e in examples
        ]
    )
    with torch.no_grad():
        chunks = range(0, len(examples), 8)
        latents = torch.cat([model.vae.encode(pixels[i : i + 8] / 127.5 - 1).latent_dist.mean for i in chunks])
        latents = latents * model.vae.config.scaling_factor
    text, extra = _bare_conditioning(model, [e.caption for e in examples])
    model.unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=KOHYA_UNET_MODULES))
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
        pred = model.unet(model.noise_scheduler.add_noise(lat, noise, t), t, text[rows], **extra(rows)).sample
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


def _config(path: Path, steps: int, out_dir: Path, name: str) -> Path:
    import tomli_w

    flat = {
        "pretrained_model_name_or_path": name,
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


def measure(name: str, rounds: int, steps: int, skip: int) -> dict[str, tuple[float, float]]:
    """{side: (best time per step, peak RSS MiB)} of lora-sched and the bare loop on model `name`."""
    per_step: dict[str, list[float]] = {"lora-sched": [], "bare": []}
    peak: dict[str, list[float]] = {"lora-sched": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in ("lora-sched", "bare") if r % 2 == 0 else ("bare", "lora-sched"):
                out = Path(tmp) / f"{side}-{r}"
                out.mkdir()
                if side == "bare":
                    cmd = [sys.executable, __file__, "--bare", str(steps), str(out), "--model", name]
                else:
                    cfg = _config(Path(tmp) / f"c-{r}.toml", steps, out, name)
                    cmd = [sys.executable, "-m", "lora_sched", "train", str(cfg)]
                _, rss = _run(cmd)
                stamps = _stamps(side, out)
                intervals = [b - a for a, b in zip(stamps[skip - 1 :], stamps[skip:])]
                per_step[side].append(statistics.median(intervals))
                peak[side].append(rss)
                print(f"{name} round {r}: {side:10s} {1 / per_step[side][-1]:7.1f} steps/s  peak RSS {rss:7.1f} MiB")
    return {side: (min(per_step[side]), max(peak[side])) for side in per_step}


def report(name: str, result: dict[str, tuple[float, float]]) -> None:
    (ours, mem_ours), (bare, mem_bare) = result["lora-sched"], result["bare"]
    print(f"\n{name}:")
    print(f"  lora-sched train: {1 / ours:.1f} steps/s, peak RSS {mem_ours:.0f} MiB")
    print(f"  bare loop:        {1 / bare:.1f} steps/s, peak RSS {mem_bare:.0f} MiB")
    print(f"  speed ratio (lora-sched / bare, target >= 1.0): {bare / ours:.3f}")
    print(f"  memory ratio (lora-sched / bare, target <= 1.02): {mem_ours / mem_bare:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:tiny-sd", help="builtin:tiny-sd, builtin:tiny-sdxl or both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=20, help="first steps left out (warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both (default: torch's)")
    parser.add_argument("--bare", nargs=2, metavar=("STEPS", "OUTDIR"))
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.bare:
        bare_loop(int(args.bare[0]), args.bare[1], args.model)
        return
    names = ["builtin:tiny-sd", "builtin:tiny-sdxl"] if args.model == "both" else [args.model]
    results = {name: measure(name, args.rounds, args.steps, args.skip) for name in names}
    print(f"\nthreads: {os.environ.get('OMP_NUM_THREADS', 'torch default')}, {args.rounds} rounds, best of each")
    for name, result in results.items():
        report(name, result)
    if len(results) == 2:
        (sd, sd_mem), (xl, xl_mem) = (results[n]["lora-sched"] for n in names)
        print(
            f"\ntiny SDXL / tiny SD (lora-sched train): time per step {xl / sd:.2f}x, peak RSS {xl_mem / sd_mem:.2f}x"
        )


if __name__ == "__main__":
    main()

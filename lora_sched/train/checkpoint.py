"""Checkpoints that survive a kill at any moment, and exact resume.

A checkpoint is a folder ``output_dir/checkpoints/step-00000040/`` holding the LoRA weights
(``lora.safetensors``, trainable tensors by name), ``optimizer.pt``, ``scheduler.pt``, one
``rng-<rank>.pt`` per process (python, numpy, torch RNG states) and ``state.json`` (step, epoch,
resolved schedule, config values). It is written under ``.tmp-step-...`` and renamed into place as
the last act, so a folder named ``step-*`` is always complete; the previous checkpoints stay
untouched meanwhile.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lora_sched.config.writer import atomic_write_text
from lora_sched.errors import ConfigError, problem, raw

FORMAT = "lora_sched.checkpoint/1"
STATE_FILE = "state.json"
_STEP_RE = re.compile(r"^step-(\d+)$")
#: Config keys that fix what the weights and the data order mean: changing one breaks a resume.
IDENTITY_KEYS = (
    "pretrained_model_name_or_path",
    "train_data_dir",
    "resolution",
    "network_dim",
    "network_alpha",
    "train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "optimizer_type",
    "optimizer_args",  # torch's Optimizer.load_state_dict would silently restore the old hyperparameters
)


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (step, folder), oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    accelerator: Any,
    output_dir: Path,
    step: int,
    tensors: Mapping[str, Any],
    optimizer: Any,
    scheduler: Any,
    state: Mapping[str, Any],
) -> Path:
    """Write checkpoint `step` atomically (all processes call this; process 0 writes the shared parts)."""
    import torch

    from lora_sched.train.lora import save_safetensors_atomic

    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    main = accelerator.is_main_process
    if main:
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a run killed mid-save
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_sync(torch, rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if main:
        save_safetensors_atomic(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / "lora.safetensors"
        )
        _save_sync(torch, optimizer.state_dict(), tmp / "optimizer.pt")
        _save_sync(torch, scheduler.state_dict(), tmp / "scheduler.pt")
        if getattr(accelerator, "scaler", None) is not None:  # fp16: the loss scale decides which updates skip
            _save_sync(torch, accelerator.scaler.state_dict(), tmp / "scaler.pt")
        record = {"format": FORMAT, "step": step, "num_processes": accelerator.num_processes, **state}
        atomic_write_text(tmp / STATE_FILE, json.dumps(record, indent=1, sort_keys=True, default=str))
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (a resumed run): swap, then drop the old copy
            old = root / f".old-step-{step:08d}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    accelerator.wait_for_everyone()
    return final


def _save_sync(torch: Any, obj: Any, path: Path) -> None:
    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_resume_dir(resume: str, output_dir: Path) -> Path | None:
    """The folder `resume` names; "latest" = the newest complete checkpoint (None if there is none)."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(os.path.expanduser(resume))
    if not (path / STATE_FILE).is_file():
        inside = list_checkpoints(path)  # an output_dir given instead of a checkpoint: take its newest
        if inside:
            return inside[-1][1]
        raise ConfigError(
            problem(
                "resume",
                f'a checkpoint folder (with {STATE_FILE}) or "latest"',
                resume,
                f"checkpoints are written to {checkpoints_dir(output_dir)}/step-NNNNNNNN",
            )
        )
    return path


def read_part(path: Path, read: Any) -> Any:
    """read(path), with a missing or damaged file turned into a one-paragraph resume error."""
    try:
        return read(path)
    except FileNotFoundError:
        raise ConfigError(
            problem("resume", "a complete checkpoint", raw(f"{path} is missing"), "resume from another checkpoint")
        ) from None
    except Exception as exc:  # json, pickle, safetensors and torch each raise their own kinds
        raise ConfigError(
            problem(
                "resume",
                "a readable checkpoint",
                raw(f"{path}: {type(exc).__name__}: {exc}"),
                "the checkpoint is damaged; resume from an earlier one (checkpoints/step-*)",
            )
        ) from None


def load_torch(path: Path) -> Any:
    import torch

    return read_part(path, lambda p: torch.load(p, map_location="cpu", weights_only=False))


def read_state(folder: Path) -> dict[str, Any]:
    state = read_part(folder / STATE_FILE, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if state.get("format") != FORMAT:
        raise ConfigError(problem("resume", f"a checkpoint in format {FORMAT}", raw(str(state.get("format")))))
    return state


def identity_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Any]:
    """Problems for every identity key whose value differs between the checkpoint and the config."""
    out = []
    for key in IDENTITY_KEYS:
        if saved.get(key) != current.get(key):
            out.append(
                problem(
                    key,
                    raw(f"{saved.get(key)!r} (as in the checkpoint)"),
                    raw(f"{current.get(key)!r} in the current config"),
                    "restore the value the run started with, or start a new run in another output_dir",
                )
            )
    return out


def load_checkpoint(folder: Path, accelerator: Any, params: Mapping[str, Any], optimizer: Any) -> None:
    """Restore LoRA tensors (bit for bit), optimizer state and this process's RNG states."""
    import torch
    from safetensors.torch import load_file

    saved = read_part(folder / "lora.safetensors", lambda p: load_file(str(p)))
    missing = sorted(set(params) - set(saved))
    if missing:
        raise ConfigError(
            problem(
                "resume", "a checkpoint with the same LoRA layers", raw(f"{len(missing)} missing, e.g. {missing[0]}")
            )
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name].to(param.device, param.dtype))
    optimizer.load_state_dict(load_torch(folder / "optimizer.pt"))
    if getattr(accelerator, "scaler", None) is not None and (folder / "scaler.pt").is_file():
        accelerator.scaler.load_state_dict(load_torch(folder / "scaler.pt"))
    rng_file = folder / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(load_torch(rng_file))

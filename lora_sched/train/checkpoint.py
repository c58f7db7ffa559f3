"""Checkpoints that survive a kill at any moment, load no code, and prove their integrity.

A checkpoint is a folder ``output_dir/checkpoints/step-00000040/`` holding the LoRA weights
(``lora.safetensors``, trainable tensors by name), ``optimizer.pt``, ``scheduler.pt``, one
``rng-<rank>.pt`` per process (python, numpy, torch RNG states as plain values and tensors),
``state.json`` (step, epoch, resolved schedule, config values) and ``manifest.json`` (size and
sha256 of every other file). It is written under ``.tmp-step-...`` and renamed into place as the
last act, so a folder named ``step-*`` is always complete; the previous checkpoints stay untouched
meanwhile. Reading one checks the manifest first, and ``.pt`` files are read with
``torch.load(weights_only=True)``: tensors and plain values only, never a pickled object.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_sched.config.keys import keys_with
from lora_sched.errors import ConfigError, problem, raw

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)

FORMAT = "lora_sched.checkpoint/2"
STATE_FILE = "state.json"
MANIFEST = "manifest.json"
#: Files every checkpoint has (rng-<rank>.pt and the fp16 scaler.pt come on top).
REQUIRED = ("lora.safetensors", "optimizer.pt", "scheduler.pt", STATE_FILE)
_STEP_RE = re.compile(r"^step-(\d+)$")
_HINT_OTHER = "resume from an earlier checkpoint (checkpoints/step-*); --resume latest skips damaged ones"
#: Config keys that fix what the weights and the data order mean: changing one breaks a resume (an
#: optimizer_args change too: torch's Optimizer.load_state_dict would silently restore the old ones).
IDENTITY_KEYS = keys_with("identity")


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoint folders (step, folder), oldest first (whether intact is `verify_checkpoint`'s job)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors, ints, floats and lists (loadable with weights_only)."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
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
    from safetensors.torch import save

    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    main = accelerator.is_main_process
    if main:
        _remove(tmp)  # left by a run killed mid-save
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _write_part(tmp / f"rng-{accelerator.process_index}.pt", _torch_bytes(rng_state()))
    accelerator.wait_for_everyone()
    if main:
        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        _write_part(tmp / "lora.safetensors", save(cpu))
        _write_part(tmp / "optimizer.pt", _torch_bytes(optimizer.state_dict()))
        _write_part(tmp / "scheduler.pt", _torch_bytes(scheduler.state_dict()))
        if getattr(accelerator, "scaler", None) is not None:  # fp16: the loss scale decides which updates skip
            _write_part(tmp / "scaler.pt", _torch_bytes(accelerator.scaler.state_dict()))
        record = {"format": FORMAT, "step": step, "num_processes": accelerator.num_processes, **state}
        _write_part(tmp / STATE_FILE, json.dumps(record, indent=1, sort_keys=True, default=str).encode())
        write_manifest(tmp)
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (a resumed run): swap, then drop the old copy
            old = root / f".old-step-{step:08d}"
            _remove(old)
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    accelerator.wait_for_everyone()
    return final


def _remove(path: Path) -> None:
    """Delete a folder, a file or a link at `path` (whatever a crash or a user left there)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_part(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """manifest.json: size and sha256 of every other file in `folder`, read back from disk."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(folder.iterdir())}
    files.pop(MANIFEST, None)
    _write_part(folder / MANIFEST, json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True).encode())


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


def damaged(path: Path, what: str, hint: str = _HINT_OTHER) -> ConfigError:
    """The one-paragraph error for a checkpoint file that cannot be trusted."""
    return ConfigError(
        problem("resume", "an intact checkpoint", raw(f"{path}: {what}"), f"the checkpoint is damaged; {hint}")
    )


def verify_checkpoint(folder: Path) -> None:
    """Refuse (ConfigError naming the file) a checkpoint whose files differ from its manifest."""
    manifest = read_part(folder / MANIFEST, _read_json)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or any(name not in files for name in REQUIRED):
        raise damaged(folder / MANIFEST, "not a checkpoint manifest listing " + ", ".join(REQUIRED))
    for name, entry in files.items():
        path = folder / str(name)
        if Path(str(name)).name != name or not isinstance(entry, dict):
            raise damaged(folder / MANIFEST, f"a malformed entry {name!r}")
        try:
            size = path.stat().st_size
        except OSError:
            raise damaged(path, "listed in manifest.json but missing") from None
        if size != entry.get("bytes"):
            raise damaged(path, f"{size} bytes, manifest.json says {entry.get('bytes')}")
        try:
            digest = _sha256(path)
        except OSError as exc:
            raise damaged(path, f"cannot be read ({exc.strerror or exc})") from None
        if digest != entry.get("sha256"):
            raise damaged(path, "its sha256 differs from the one manifest.json recorded when it was saved")


def find_resume_dir(resume: str, output_dir: Path) -> Path | None:
    """The intact checkpoint `resume` names (None: "latest" and there is none yet).

    "latest" (or an output folder) = the newest checkpoint whose files match their manifest;
    damaged newer ones are skipped with a notice. A checkpoint folder named directly must be intact.
    """
    if resume == "latest":
        return _newest_intact(output_dir)
    path = Path(os.path.expanduser(resume))
    if not (path / STATE_FILE).is_file():
        if list_checkpoints(path):  # an output_dir given instead of a checkpoint: take its newest
            return _newest_intact(path)
        raise ConfigError(
            problem(
                "resume",
                f'a checkpoint folder (with {STATE_FILE}) or "latest"',
                resume,
                f"checkpoints are written to {checkpoints_dir(output_dir)}/step-NNNNNNNN",
            )
        )
    verify_checkpoint(path)
    return path


def _newest_intact(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    skipped: list[str] = []
    for _, folder in reversed(found):
        try:
            verify_checkpoint(folder)
        except ConfigError as exc:
            skipped.append(exc.problems[0].found)
            log.warning(f"notice: skipping a damaged checkpoint: {exc.problems[0].found}")
            continue
        if skipped:
            log.warning(f"notice: resuming from {folder.name}, the newest intact checkpoint")
        return folder
    if skipped:
        raise ConfigError(
            problem(
                "resume",
                "an intact checkpoint",
                raw(f"{len(skipped)} checkpoint(s) in {checkpoints_dir(output_dir)}, all damaged"),
                "start a new run without --resume (the damaged checkpoints are set aside, not deleted)",
            )
        )
    return None


def read_part(path: Path, read: Any) -> Any:
    """read(path), with a missing, damaged or unsafe file turned into a one-paragraph resume error."""
    import pickle

    try:
        return read(path)
    except FileNotFoundError:
        raise ConfigError(
            problem("resume", "a complete checkpoint", raw(f"{path} is missing"), "resume from another checkpoint")
        ) from None
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise damaged(
                path,
                "it holds Python objects, not only tensors and plain values; loading such a file can run "
                "code, so lora-sched never does",
                "use checkpoints written by lora-sched, or start a new run",
            ) from None
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # json, safetensors and torch each raise their own kinds
        raise damaged(path, f"{type(exc).__name__}: {exc}") from None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_torch(path: Path) -> Any:
    """A .pt file of tensors and plain values (torch.load with weights_only=True: no pickled code)."""
    import torch

    return read_part(path, lambda p: torch.load(p, map_location="cpu", weights_only=True))


#: state.json fields a resume reads, with the types they must have.
_STATE_FIELDS = {"step": int, "num_processes": int, "steps_per_epoch": int, "values": dict, "resolved": dict}


def read_state(folder: Path) -> dict[str, Any]:
    """state.json, checked field by field: a damaged one is an error naming the field."""
    path = folder / STATE_FILE
    state = read_part(path, _read_json)
    if not isinstance(state, dict):
        raise damaged(path, f"a JSON {type(state).__name__}, not an object")
    if state.get("format") != FORMAT:
        raise ConfigError(
            problem(
                "resume",
                f"a checkpoint in format {FORMAT}",
                raw(f"{path}: format {state.get('format')!r}"),
                "checkpoints of other lora-sched versions cannot be resumed: start a new run",
            )
        )
    for field, kind in _STATE_FIELDS.items():
        value = state.get(field)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < (field != "step")):
            raise damaged(path, f"{field} = {value!r}, expected {'an int' if kind is int else 'an object'}")
    match = _STEP_RE.match(folder.name)
    if match and int(match.group(1)) != state["step"]:
        raise damaged(path, f"step = {state['step']} in a folder named {folder.name}")
    return state


def identity_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Any]:
    """Problems for every identity key whose value differs between the checkpoint and the config."""
    out = []
    for key in IDENTITY_KEYS:
        if saved.get(key) != current.get(key):
            out.append(
                problem(
                    key,
                    f"{saved.get(key)!r} (as in the checkpoint)",
                    raw(f"{current.get(key)!r} in the current config"),
                    "restore the value the run started with, or start a new run in another output_dir",
                )
            )
    return out


@dataclass
class Checkpoint:
    """An intact checkpoint read into memory (before the model is built)."""

    folder: Path
    state: dict[str, Any]
    tensors: dict[str, Any]
    optimizer: Any
    scheduler: Any
    scaler: Any | None

    @property
    def step(self) -> int:
        return int(self.state["step"])


def read_checkpoint(folder: Path) -> Checkpoint:
    """Verify and read every shared part of a checkpoint (the per-process RNG file is read on load)."""
    from safetensors.torch import load_file

    verify_checkpoint(folder)
    state = read_state(folder)
    tensors = read_part(folder / "lora.safetensors", lambda p: load_file(str(p)))
    scaler = load_torch(folder / "scaler.pt") if (folder / "scaler.pt").is_file() else None
    return Checkpoint(
        folder, state, tensors, load_torch(folder / "optimizer.pt"), load_torch(folder / "scheduler.pt"), scaler
    )


def load_checkpoint(saved: Checkpoint, accelerator: Any, params: Mapping[str, Any], optimizer: Any) -> None:
    """Restore LoRA tensors (bit for bit), optimizer state and this process's RNG states."""
    import torch

    missing = sorted(set(params) - set(saved.tensors))
    if missing:
        raise ConfigError(
            problem(
                "resume", "a checkpoint with the same LoRA layers", raw(f"{len(missing)} missing, e.g. {missing[0]}")
            )
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved.tensors[name].to(param.device, param.dtype))
    _restore(saved.folder / "optimizer.pt", optimizer.load_state_dict, saved.optimizer)
    if getattr(accelerator, "scaler", None) is not None and saved.scaler is not None:
        _restore(saved.folder / "scaler.pt", accelerator.scaler.load_state_dict, saved.scaler)
    rng_file = saved.folder / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file():
        _restore(rng_file, set_rng_state, load_torch(rng_file))


def _restore(path: Path, load: Any, state: Any) -> None:
    """load(state), with a state of the wrong shape reported as a damaged file instead of a traceback."""
    try:
        load(state)
    except ConfigError:
        raise
    except Exception as exc:  # torch raises ValueError, KeyError, TypeError, RuntimeError for bad states
        raise damaged(path, f"it does not fit this run ({type(exc).__name__}: {exc})") from None


def jsonable(value: Any) -> Any:
    """`value` as JSON can hold it (a checkpoint's record of the config values): other types as str."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(x) for x in value]
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    return str(value)

"""The end of a run, and the files a run writes from its weights: checkpoints (every N steps, at a
stop signal, at the end) and the LoRA file with kohya's keys and metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lora_sched.train import checkpoint as ckpt
from lora_sched.train.build import Run
from lora_sched.train.lora import lora_alphas, lora_tensors, save_safetensors_atomic, to_kohya
from lora_sched.train.metadata import lora_hashes, lora_metadata, run_facts
from lora_sched.train.optim import set_optimizer_mode
from lora_sched.train.signals import TrainingInterrupted


@dataclass
class TrainResult:
    output: Path
    steps: int
    last_loss: float
    is_main_process: bool = True
    written: bool = True  #: False: the run was already complete and its LoRA file there (nothing rewritten)


class StepsDone(NamedTuple):
    """How the steps ended (lora_sched.train.steps)."""

    stopped: int | None  #: the signal that stopped the run, or None
    done: int  #: steps done (counting those before a resume)
    last_loss: float  #: the loss of the last step (nan when none ran)


def finish(run: Run, steps: StepsDone) -> TrainResult:
    """The final checkpoint and the LoRA file (with kohya's metadata); a stop before the last step
    raises TrainingInterrupted (its checkpoint was saved by the loop)."""
    stopped, done = steps.stopped, steps.done
    plan, accelerator, run_length = run.plan, run.processes.accelerator, run.training.resolved.run_length
    checkpoints = ckpt.checkpoints_dir(plan.output_dir)
    if stopped is not None and done < run_length:
        raise TrainingInterrupted(stopped, done, checkpoints / f"step-{done:08d}")
    set_optimizer_mode(run.training.optimizer, "eval")  # schedule-free: save the averaged weights, as sd-scripts does
    final_step = max(run.start, run_length)
    if run.start < run_length:
        save_checkpoint(run, final_step, (final_step - 1) // run.processes.steps_per_epoch)
    main = accelerator.is_main_process
    written = run.start < run_length or not plan.out_file.exists()
    if main and written:
        save_lora(run, final_step, plan.out_file)
    accelerator.wait_for_everyone()
    if plan.tracker:
        accelerator.end_training()
    if stopped is not None:  # the signal came during the last step: the run is complete, the exit still says stopped
        raise TrainingInterrupted(stopped, final_step, checkpoints / f"step-{final_step:08d}")
    return TrainResult(plan.out_file, final_step, steps.last_loss, main, written)


def save_checkpoint(run: Run, step: int, epoch: int) -> None:
    """Checkpoint `step` (every process calls this), with the run's record (state.json)."""
    training = run.training
    state = {
        "values": {key: ckpt.jsonable(value) for key, value in run.cfg.values.items()},
        "resolved": training.resolved.to_dict(),
        "steps_per_epoch": run.processes.steps_per_epoch,
        "epoch": epoch,
    }
    ckpt.save_checkpoint(
        run.processes.accelerator,
        run.plan.output_dir,
        step,
        training.params,
        training.optimizer,
        training.scheduler,
        state,
    )


#: save_precision -> the tensor type sd-scripts' get_save_dtype gives ("float": float32).
SAVE_DTYPES = {"float": "float32", "fp16": "float16", "bf16": "bfloat16"}


def saved_precision(tensors: dict[str, Any], save_precision: str | None) -> dict[str, Any]:
    """Every tensor (the alphas too, as sd-scripts' save_weights casts the whole state dict) in the
    type save_precision names; unset: as they are."""
    if not save_precision:
        return tensors
    import torch

    dtype = getattr(torch, SAVE_DTYPES[save_precision])
    return {name: tensor.to(dtype) for name, tensor in tensors.items()}


def save_lora(run: Run, step: int, path: Path) -> None:
    """The LoRA as it is after `step` updates, kohya keys and metadata, written atomically."""
    plan, built = run.plan, run.built
    model = built.model
    metadata = lora_metadata(run_facts(run, step), built.bucket_metadata)  # sd-scripts' ss_* keys
    sdxl_layers = int(model.unet.config.layers_per_block) if model.is_sdxl else None
    lora = to_kohya(lora_tensors(model, plan.train_te), lora_alphas(model, plan.train_te), sdxl_layers)
    lora = saved_precision(lora, run.cfg.values.get("save_precision"))
    metadata.update(lora_hashes(lora, metadata))  # sshs_* over the tensors and ss_* keys, as sd-scripts
    save_safetensors_atomic(lora, path, metadata)

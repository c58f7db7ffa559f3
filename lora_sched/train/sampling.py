"""Sample images during training, as sd-scripts draws them: when, which sampler, which file names.

When (sd-scripts' rules): before the first step with `sample_at_first`; after every
`sample_every_n_steps` updates; at the end of every `sample_every_n_epochs`-th epoch (this one wins:
with it set, the step setting is ignored). Images go to ``output_dir/sample/`` as
``{output_name}_{point}_{prompt index:02d}_{YYYYmmddHHMMSS}[_{seed}].png``, point being the step
(``000040``) or ``e`` and the epoch (``e000002``; ``e000000`` for the image before training), and a
contact sheet (one row per sampling point, one column per prompt) is rewritten after each point.

Drawing never touches the training's random stream: each image has its own torch.Generator (the
prompt's seed, or a fresh random one as sd-scripts draws unseeded prompts), and the global torch RNG
is forked around the pipeline anyway, so a run with samples trains bit-identically to one without.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_sched.config.prompts import SamplePrompt, read_prompt_file
from lora_sched.config.samplers import (
    DEFAULT_SAMPLER,
    SAMPLE_DIR,
    SAMPLERS,
    contact_sheet_path,
    sample_interval,
    samples_drawn,
)
from lora_sched.errors import ConfigError, problem
from lora_sched.train.signals import stop_requested

log = logging.getLogger("lora_sched.train")

PNDM_MIN_STEPS = 4
#: sd-scripts' sampler name -> (diffusers scheduler class, extra constructor arguments).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {"clip_sample": True}),  # sd-scripts turns clip_sample on for DDIM
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "k_lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "k_euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "k_euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmsolver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmsingle": ("DPMSolverSinglestepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "k_dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "k_dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
}
assert set(SCHEDULERS) == set(SAMPLERS)


@dataclass
class SamplePlan:
    """What to draw and when; `made` collects this run's images for the contact sheet."""

    prompts: tuple[SamplePrompt, ...]
    folder: Path
    output_name: str
    sampler: str = DEFAULT_SAMPLER
    every_n_steps: int | None = None
    every_n_epochs: int | None = None
    at_first: bool = False
    clip_skip: int | None = None  #: sd-scripts samples SD 1.x / 2.x with the clip_skip it trains with
    made: list[tuple[str, int, Path]] = field(default_factory=list)  # (point, prompt index, file)

    def point_after(self, done: int, steps_per_epoch: int, run_length: int) -> str | None:
        """The sampling point after update `done` (1-based), or None: sd-scripts' rules."""
        if self.every_n_epochs:
            epoch_end = done % steps_per_epoch == 0 or done == run_length
            epoch = -(-done // steps_per_epoch)
            return f"e{epoch:06d}" if epoch_end and epoch % self.every_n_epochs == 0 else None
        if self.every_n_steps and done % self.every_n_steps == 0:
            return f"{done:06d}"
        return None


def sample_plan(values: Any, output_dir: Path) -> SamplePlan | None:
    """The run's sampling, or None when it draws nothing. A prompt file that does not exist is a
    warning (sd-scripts trains on without samples); one that cannot be read is a ConfigError."""
    if not samples_drawn(values):
        return None
    every_steps = sample_interval(values.get("sample_every_n_steps"))
    every_epochs = sample_interval(values.get("sample_every_n_epochs"))
    at_first = bool(values.get("sample_at_first"))
    path = Path(os.path.expanduser(str(values["sample_prompts"])))
    if not path.is_file():
        log.warning(f"warning: sample_prompts: no prompt file at {path}: no sample images")
        return None
    found = read_prompt_file(path)  # its warnings are the config's (lora_sched.config.loader reads it too)
    sampler = str(values.get("sample_sampler") or DEFAULT_SAMPLER)
    for prompt in found.prompts:
        _check_sampler_needs(prompt.sampler or sampler, prompt, path)
    if not found.prompts:
        log.warning(f"warning: sample_prompts: {path} holds no prompt: no sample images")
        return None
    return SamplePlan(
        tuple(found.prompts), output_dir / SAMPLE_DIR, str(values["output_name"]), sampler, every_steps,
        every_epochs, at_first, int(values["clip_skip"]) if values.get("clip_skip") else None,
    )  # fmt: skip


#: Fewest inference steps a sampler runs (diffusers' PNDM fails below its 4 Runge-Kutta steps).
MIN_STEPS = {"pndm": PNDM_MIN_STEPS}


def _check_sampler_needs(name: str, prompt: SamplePrompt, path: Path) -> None:
    """Refuse before step 0 what would fail at the first sampling point (sd-scripts fails there)."""
    import importlib.util

    if SCHEDULERS[name][0] == "LMSDiscreteScheduler" and importlib.util.find_spec("scipy") is None:
        hint = "diffusers' LMS scheduler needs scipy: pip install scipy, or choose another sampler"
        raise ConfigError(problem("sample_sampler", "a sampler whose packages are installed", name, hint))
    if prompt.sample_steps < MIN_STEPS.get(name, 1):
        found = problem(
            f"prompt {prompt.index}: sample_steps", f"at least {MIN_STEPS[name]} steps with {name}", prompt.sample_steps
        )
        raise ConfigError(found.located(file=str(path), line=prompt.line))


def make_scheduler(name: str, train_config: Any) -> Any:
    """sd-scripts' sampler `name` as a diffusers scheduler over the model's training noise schedule
    (betas and prediction type from its config: SD 1.x's scaled-linear 0.00085..0.012 for ours)."""
    import warnings

    import diffusers

    class_name, extra = SCHEDULERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers deprecates "dpmsolver", which sd-scripts offers
        warnings.simplefilter("ignore", DeprecationWarning)  # KDPM2's NumPy 2 notices, thousands per call
        return getattr(diffusers, class_name)(
            num_train_timesteps=int(train_config.num_train_timesteps),
            beta_start=float(train_config.beta_start),
            beta_end=float(train_config.beta_end),
            beta_schedule=str(train_config.beta_schedule),
            prediction_type=str(train_config.prediction_type),
            **extra,
        )


def draw_samples(plan: SamplePlan, model: Any, accelerator: Any, point: str) -> list[Path]:
    """Draw every prompt with the model as it is now; write the PNGs and the contact sheet (main
    process only). The global RNG states are restored afterwards, whatever the pipeline drew."""
    import warnings

    import torch

    if not accelerator.is_main_process:
        return []
    plan.folder.mkdir(parents=True, exist_ok=True)
    vae_device = next(model.vae.parameters()).device
    model.vae.to(accelerator.device)  # kept on the CPU between sampling points (only caching needs it)
    _quiet_torchvision_notice()
    pipe = model.pipeline()
    pipe.set_progress_bar_config(disable=True)
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    written: list[Path] = []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), accelerator.autocast(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # KDPM2's NumPy 2 notices, at every step
            for prompt in plan.prompts:
                path = None if stop_requested() else _draw_one(plan, pipe, model, prompt, point)
                if path is None:
                    log.info(f"sampling at {point} stopped by the signal: {len(written)} of {len(plan.prompts)} drawn")
                    break
                written.append(path)
    finally:
        model.vae.to(vae_device)
    plan.made.extend((point, p.index, path) for p, path in zip(plan.prompts, written))
    if written:
        write_contact_sheet(plan)
    return written


class _NoTorchvisionNotice(logging.Filter):
    """Drops transformers' "`CLIPImageProcessor` requires torchvision (not installed); falling back
    to ..." notices, which diffusers' pipelines set off when they are built: the pipelines here take
    no image input, so the fallback changes nothing the user could act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def _quiet_torchvision_notice() -> None:
    """Filter the notice on transformers' logger that writes it (once per process)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _NoTorchvisionNotice) for f in logger.filters):
        logger.addFilter(_NoTorchvisionNotice())


def _stop_between_steps(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's callback after each denoising step: asks it to skip the remaining steps when a
    signal asked the run to stop. It returns the tensors it was given, so the image is unchanged."""
    if stop_requested():
        pipe._interrupt = True  # diffusers' own flag (its `interrupt` property), read before each step
    return tensors


def _draw_one(plan: SamplePlan, pipe: Any, model: Any, prompt: SamplePrompt, point: str) -> Path | None:
    """The image of one prompt, written; None (nothing written) when a stop signal cut it short."""
    import torch

    pipe.scheduler = make_scheduler(prompt.sampler or plan.sampler, model.noise_scheduler.config)
    seed = prompt.seed if prompt.seed is not None else secrets.randbits(63)
    width, height = prompt.size
    image = pipe(
        **_prompts(plan, model, prompt),
        width=width,
        height=height,
        num_inference_steps=prompt.sample_steps,
        guidance_scale=prompt.scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=_stop_between_steps,
    ).images[0]
    if stop_requested():  # its remaining denoising steps were skipped: a half-drawn image is not a sample
        return None
    path = plan.folder / image_name(plan.output_name, point, prompt.index, prompt.seed)
    _save_png(image, path)
    return path


def _prompts(plan: SamplePlan, model: Any, prompt: SamplePrompt) -> dict[str, Any]:
    """The pipeline's prompt arguments. SD 1.x / 2.x prompts are encoded as sd-scripts' sampling
    pipeline encodes them (lora_sched.train.prompt_encoding): bracket weights, up to 225 tokens, and
    clip_skip for the prompt and the negative prompt alike. SDXL prompts go to diffusers' pipeline as
    text (SDXL samples ignore clip_skip, as sd-scripts' SDXL pipeline does)."""
    if model.is_sdxl:
        return {"prompt": prompt.prompt, "negative_prompt": prompt.negative_prompt}
    from lora_sched.train.prompt_encoding import weighted_sd_prompts

    guided = prompt.scale > 1.0  # diffusers draws against the negative prompt only then
    return weighted_sd_prompts(
        model.tokenizer, model.text_encoder, prompt.prompt, prompt.negative_prompt, guided, plan.clip_skip
    )


def image_name(output_name: str, point: str, index: int, seed: int | None, now: float | None = None) -> str:
    """sd-scripts' sample file name: the seed part only for a prompt with a fixed seed."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    return f"{output_name}_{point}_{index:02d}_{stamp}{'' if seed is None else f'_{seed}'}.png"


def _save_png(image: Any, path: Path) -> None:
    import io

    from lora_sched.config.writer import atomic_write_bytes

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


#: Lines of prompt text above each column of the contact sheet (longer prompts end in "...").
LABEL_LINES = 3
#: Narrowest column of the contact sheet, so that a small image's prompt still gets a few words a line.
MIN_COLUMN_WIDTH = 96


def label_lines(text: str, width: float, measure: Any, lines: int = LABEL_LINES) -> list[str]:
    """`text` wrapped into at most `lines` lines of at most `width` pixels (`measure(s)`: the width of
    s); words that do not fit end the last line with "..."; a word wider than a line is cut."""
    out: list[str] = []
    for word in text.split():
        joined = f"{out[-1]} {word}" if out else word
        if out and measure(joined) <= width:
            out[-1] = joined
            continue
        if len(out) == lines:
            out[-1] = _cut(out[-1] + " ...", width, measure)
            return out
        out.append(_cut(word, width, measure))
    return out


def _cut(text: str, width: float, measure: Any) -> str:
    """`text` shortened to fit `width`, ending in "..." when cut."""
    if measure(text) <= width:
        return text
    while text and measure(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def write_contact_sheet(plan: SamplePlan) -> Path:
    """One row per sampling point (labelled), one column per prompt (its prompt above it, wrapped to
    a few lines), each cell the image at its size."""
    from PIL import Image, ImageDraw, ImageFont

    points = list(dict.fromkeys(point for point, _, _ in plan.made))
    cell_w = max(MIN_COLUMN_WIDTH, *(p.size[0] for p in plan.prompts))
    cell_h = max(p.size[1] for p in plan.prompts)
    label_w, pad = 72, 4
    font = ImageFont.load_default()
    line_h = font.getbbox("Ag")[3] + 2
    labels = [label_lines(p.prompt, cell_w - pad, font.getlength) for p in plan.prompts]
    head = pad + LABEL_LINES * line_h + pad
    size = (label_w + len(plan.prompts) * (cell_w + pad), head + len(points) * (cell_h + pad))
    sheet = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(sheet)
    for column, lines in enumerate(labels):
        left = label_w + column * (cell_w + pad)
        draw.multiline_text((left, pad), "\n".join(lines), fill="black", font=font, spacing=2)
    for row, point in enumerate(points):
        top = head + row * (cell_h + pad)
        draw.text((4, top + cell_h // 2 - 6), point, fill="black", font=font)
        for made_point, index, path in plan.made:
            if made_point == point:
                with Image.open(path) as image:
                    sheet.paste(image.convert("RGB"), (label_w + index * (cell_w + pad), top))
    target = contact_sheet_path(plan.folder.parent, plan.output_name)
    _save_png(sheet, target)
    return target

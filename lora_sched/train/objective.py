"""What a step learns: sd-scripts' training objective options, as pure functions on tensors.

sd-scripts (train_network.py with library/train_util.py and library/custom_train_functions.py)
changes the denoising loss with options in this order:

1. noise: ``noise_offset`` (times a random strength with ``noise_offset_random_strength``, plus
   ``adaptive_noise_scale`` x |latent channel mean|), then multi-resolution noise
   (``multires_noise_iterations`` / ``multires_noise_discount``);
2. timesteps: uniform in [min_timestep, max_timestep), or all equal to max_timestep when
   min_timestep >= max_timestep;
3. input perturbation: the noisy latents get ``ip_noise_gamma`` x fresh noise more (the target
   keeps the plain noise);
4. the element-wise loss (``loss_type`` l2, l1, huber, smooth_l1; huber's threshold from
   ``huber_schedule`` / ``huber_c`` / ``huber_scale``), its mean per sample, the per-sample weights
   (sd-scripts' ``batch["loss_weights"]``: prior_loss_weight), then ``min_snr_gamma``,
   ``scale_v_pred_loss_like_noise_pred``, ``v_pred_like_loss``, ``debiased_estimation_loss``, and
   the batch mean;
5. after each optimizer update, ``scale_weight_norms``: networks/lora.py's max-norm
   regularisation of every LoRA module's up @ down product.

``zero_terminal_snr`` rescales the noise schedule's betas once, before training; the SNR table
the loss weights read is taken before that, as sd-scripts takes it.

Every random number comes from the generator passed in (the run's per-step generator), drawn in
sd-scripts' order, so a function given the same tensors and the same stream computes what
sd-scripts computes (tests/test_train_objective.py checks each against sd-scripts' own output).
Nothing here imports torch at module level: the plan builds an `Objective` without it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem

LOSS_TYPES = ("l1", "l2", "huber", "smooth_l1")
HUBER_SCHEDULES = ("constant", "exponential", "snr")
#: sd-scripts caps the SNR at this where it divides by it (t = 0 has an SNR near infinity)
SNR_CAP = 1000


@dataclass(frozen=True)
class Objective:
    """The objective options of a run, with sd-scripts' defaults (None: off)."""

    noise_offset: float | None = None
    noise_offset_random_strength: bool = False
    adaptive_noise_scale: float | None = None
    multires_noise_iterations: int | None = None
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float | None = None
    ip_noise_gamma_random_strength: bool = False
    min_timestep: int | None = None
    max_timestep: int | None = None
    loss_type: str = "l2"
    huber_schedule: str = "snr"
    huber_c: float = 0.1
    huber_scale: float = 1.0
    min_snr_gamma: float | None = None
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float | None = None
    debiased_estimation_loss: bool = False
    zero_terminal_snr: bool = False
    scale_weight_norms: float | None = None

    def timestep_range(self, num_train_timesteps: int) -> tuple[int, int]:
        """(low, high) as sd-scripts reads them: unset low is 0, unset high the schedule's length."""
        low = 0 if self.min_timestep is None else self.min_timestep
        high = num_train_timesteps if self.max_timestep is None else self.max_timestep
        return low, high


#: The config keys an Objective reads (its field names): the table in lora_sched.config.keys declares them.
OBJECTIVE_KEYS: tuple[str, ...] = tuple(Objective.__dataclass_fields__)


def objective_from_values(values: dict[str, Any]) -> Objective:
    """The Objective a config's values describe, refused where sd-scripts refuses it
    (train_util.verify_training_args)."""
    given = {name: values[name] for name in OBJECTIVE_KEYS if values.get(name) is not None}
    objective = Objective(**given)
    _check_objective(objective, bool(values.get("v_parameterization")))
    return objective


def _check_objective(objective: Objective, v_parameterization: bool) -> None:
    """sd-scripts' cross-checks of these options, as ConfigErrors naming the key to change (and its
    one warning, logged)."""
    if objective.adaptive_noise_scale is not None and objective.noise_offset is None:
        raise ConfigError(
            problem(
                "adaptive_noise_scale",
                "noise_offset set too (sd-scripts: adaptive_noise_scale requires noise_offset)",
                objective.adaptive_noise_scale,
                "set noise_offset (about 0.1 is usual), or remove adaptive_noise_scale",
            )
        )
    if objective.scale_v_pred_loss_like_noise_pred and not v_parameterization:
        raise ConfigError(
            problem(
                "scale_v_pred_loss_like_noise_pred",
                "v_parameterization = true (sd-scripts enables it only with v_parameterization)",
                True,
                "set v_parameterization = true for a v-prediction model, or remove this key",
            )
        )
    if objective.v_pred_like_loss and v_parameterization:
        raise ConfigError(
            problem(
                "v_pred_like_loss",
                "no v_pred_like_loss with v_parameterization (sd-scripts refuses the pair)",
                objective.v_pred_like_loss,
                "remove v_pred_like_loss: a v-prediction model already has a v-prediction loss",
            )
        )
    if objective.zero_terminal_snr and not v_parameterization:
        logging.getLogger("lora_sched.train").warning(
            "zero_terminal_snr without v_parameterization: an eps-prediction model cannot learn the last "
            "timestep's pure noise (sd-scripts warns the same); training goes on"
        )


# --- the noise schedule ---------------------------------------------------------------------


def snr_table(alphas_cumprod: Any) -> Any:
    """SNR(t) = alpha_bar / (1 - alpha_bar) per timestep, computed as sd-scripts'
    prepare_scheduler_for_custom_training does (from the square roots)."""
    import torch

    alpha = torch.sqrt(alphas_cumprod)
    sigma = torch.sqrt(1.0 - alphas_cumprod)
    return (alpha / sigma) ** 2


def zero_terminal_snr_betas(betas: Any) -> Any:
    """Betas rescaled so that the last timestep has zero SNR and the first keeps its own
    (Lin et al. 2023, arxiv.org/abs/2305.08891), as sd-scripts' zero_terminal_snr rescales them."""
    import torch

    root = (1 - betas).cumprod(0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root -= last
    root *= first / (first - last)
    alphas_cumprod = root**2
    alphas = torch.cat([alphas_cumprod[0:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas


def prepare_noise_scheduler(noise_scheduler: Any, objective: Objective) -> None:
    """Give the scheduler the SNR table the loss weights read (its ``all_snr``, as sd-scripts names
    it), then (zero_terminal_snr) rescale its betas. The table is taken before the rescale, as in
    sd-scripts' get_noise_scheduler: the weights keep the original schedule's SNR."""
    import torch

    noise_scheduler.all_snr = snr_table(noise_scheduler.alphas_cumprod)
    if objective.zero_terminal_snr:
        betas = zero_terminal_snr_betas(noise_scheduler.betas)
        noise_scheduler.betas = betas
        noise_scheduler.alphas = 1.0 - betas
        noise_scheduler.alphas_cumprod = torch.cumprod(noise_scheduler.alphas, dim=0)


def scheduler_snr(noise_scheduler: Any) -> Any:
    """The SNR table prepare_noise_scheduler gave the scheduler (else its own schedule's)."""
    found = getattr(noise_scheduler, "all_snr", None)
    return found if found is not None else snr_table(noise_scheduler.alphas_cumprod)


# --- noise and timesteps --------------------------------------------------------------------


class NoisedBatch(NamedTuple):
    """A micro-batch's noise (the eps target), its noised latents and its timesteps."""

    noise: Any
    noisy: Any
    timesteps: Any


def draw_noised_batch(
    latents: Any, noise_scheduler: Any, objective: Objective, gen: Any, num_train_timesteps: int
) -> NoisedBatch:
    """Noise, timesteps and noisy latents for `latents`, in sd-scripts' order and formulas
    (train_util.get_noise_noisy_latents_and_timesteps); every draw from `gen`, on the CPU, so a run
    draws the same numbers on any device."""
    import torch

    device = latents.device
    noise = torch.randn(latents.shape, generator=gen).to(device)
    if objective.noise_offset:
        strength: Any = objective.noise_offset
        if objective.noise_offset_random_strength:
            strength = (torch.rand(1, generator=gen) * objective.noise_offset).to(device)
        noise = offset_noise(latents, noise, strength, objective.adaptive_noise_scale, gen)
    if objective.multires_noise_iterations:
        noise = multires_noise(noise, objective.multires_noise_iterations, objective.multires_noise_discount, gen)
    low, high = objective.timestep_range(num_train_timesteps)
    timesteps = draw_timesteps(low, high, latents.shape[0], gen).to(device)
    noised_with = noise
    if objective.ip_noise_gamma:
        gamma: Any = objective.ip_noise_gamma
        if objective.ip_noise_gamma_random_strength:
            gamma = (torch.rand(1, generator=gen) * objective.ip_noise_gamma).to(device)
        noised_with = noise + gamma * torch.randn(latents.shape, generator=gen).to(device)
    return NoisedBatch(noise, noise_scheduler.add_noise(latents, noised_with, timesteps), timesteps)


def offset_noise(latents: Any, noise: Any, strength: Any, adaptive_scale: float | None, gen: Any) -> Any:
    """Noise plus a per-(sample, channel) constant: strength x N(0, 1); with adaptive_scale the
    strength grows by adaptive_scale x |the channel's latent mean| (floored at 0)."""
    import torch

    if adaptive_scale is not None:
        channel_mean = torch.abs(latents.mean(dim=(2, 3), keepdim=True))
        strength = torch.clamp(strength + adaptive_scale * channel_mean, 0.0, None)
    shift = torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=gen).to(latents.device)
    return noise + strength * shift


def multires_noise(noise: Any, iterations: int, discount: float, gen: Any) -> Any:
    """Pyramid noise: layer i, drawn at 1 / r**i of the size (r uniform in [2, 4)) and upsampled
    bilinearly, added with weight discount**i, until a side reaches 1; rescaled to unit std."""
    import torch

    batch, channels, height, width = noise.shape
    noise = noise.clone()
    for i in range(iterations):
        ratio = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 + 2
        small_h, small_w = max(1, int(height / (ratio**i))), max(1, int(width / (ratio**i)))
        layer = torch.randn(batch, channels, small_h, small_w, generator=gen).to(noise.device)
        noise += torch.nn.functional.interpolate(layer, size=(height, width), mode="bilinear") * discount**i
        if small_h == 1 or small_w == 1:
            break
    return noise / noise.std()


def draw_timesteps(low: int, high: int, batch: int, gen: Any) -> Any:
    """Timesteps uniform in [low, high); when low >= high every one is `high` (sd-scripts' get_timesteps)."""
    import torch

    if low < high:
        return torch.randint(low, high, (batch,), generator=gen)
    return torch.full((batch,), high, dtype=torch.long)


# --- the loss -------------------------------------------------------------------------------


def huber_threshold(objective: Objective, timesteps: Any, alphas_cumprod: Any, num_train_timesteps: int) -> Any:
    """The per-sample huber / smooth_l1 threshold c(t) of huber_schedule, None for l1 / l2
    (train_util.get_huber_threshold_if_needed; the snr schedule ignores huber_scale there too)."""
    import torch

    if objective.loss_type not in ("huber", "smooth_l1"):
        return None
    if objective.huber_schedule == "exponential":
        decay = -math.log(objective.huber_c) / num_train_timesteps
        return torch.exp(-decay * timesteps) * objective.huber_scale
    if objective.huber_schedule == "snr":
        alpha_bar = torch.index_select(alphas_cumprod, 0, timesteps.cpu())
        sigmas = ((1.0 - alpha_bar) / alpha_bar) ** 0.5
        return ((1 - objective.huber_c) / (1 + sigmas) ** 2 + objective.huber_c).to(timesteps.device)
    return torch.full((timesteps.shape[0],), objective.huber_c * objective.huber_scale, device=timesteps.device)


def elementwise_loss(pred: Any, target: Any, loss_type: str, threshold: Any) -> Any:
    """The unreduced loss of `loss_type` (train_util.conditional_loss with reduction "none")."""
    import torch
    import torch.nn.functional as F

    if loss_type == "l2":
        return F.mse_loss(pred, target, reduction="none")
    if loss_type == "l1":
        return F.l1_loss(pred, target, reduction="none")
    c = threshold.view(-1, *([1] * (pred.ndim - 1)))
    smooth = torch.sqrt((pred - target) ** 2 + c**2) - c
    return 2 * c * smooth if loss_type == "huber" else 2 * smooth


def snr_at(all_snr: Any, timesteps: Any) -> Any:
    """SNR of each sample's timestep."""
    import torch

    return torch.stack([all_snr[t] for t in timesteps])


def min_snr_weight(snr: Any, gamma: float, v_prediction: bool) -> Any:
    """Min-SNR-gamma weight: min(SNR, gamma) / SNR (v-prediction: / (SNR + 1))."""
    import torch

    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return torch.div(clipped, snr + 1 if v_prediction else snr).float()


def capped_snr(snr: Any) -> Any:
    """SNR capped at SNR_CAP, where sd-scripts divides by it."""
    import torch

    return torch.minimum(snr, torch.ones_like(snr) * SNR_CAP)


def weighted_loss(
    per_sample: Any, timesteps: Any, all_snr: Any, objective: Objective, v_prediction: bool, sample_weights: Any
) -> Any:
    """The per-sample loss times the sample weights, then the SNR weightings in sd-scripts' order
    (train_network.py: loss_weights, then post_process_loss)."""
    if sample_weights is not None:
        per_sample = per_sample * sample_weights.to(per_sample.device)
    loss = per_sample
    snr = snr_at(all_snr, timesteps) if _reads_snr(objective) else None
    if objective.min_snr_gamma:
        loss = loss * min_snr_weight(snr, objective.min_snr_gamma, v_prediction).to(loss.device)
    if objective.scale_v_pred_loss_like_noise_pred:
        capped = capped_snr(snr)
        loss = loss * (capped / (capped + 1))
    if objective.v_pred_like_loss:
        capped = capped_snr(snr)
        loss = loss + loss / (capped / (capped + 1)) * objective.v_pred_like_loss
    if objective.debiased_estimation_loss:
        capped = capped_snr(snr)
        loss = (1 / (capped + 1) if v_prediction else 1 / capped.sqrt()) * loss
    return loss


def _reads_snr(objective: Objective) -> bool:
    return bool(
        objective.min_snr_gamma
        or objective.scale_v_pred_loss_like_noise_pred
        or objective.v_pred_like_loss
        or objective.debiased_estimation_loss
    )


def objective_loss(
    pred: Any,
    target: Any,
    timesteps: Any,
    noise_scheduler: Any,
    objective: Objective,
    v_prediction: bool,
    sample_weights: Any = None,
) -> Any:
    """The micro-batch's scalar loss: element-wise loss, mean per sample, weights, batch mean
    (train_network.py's process_batch)."""
    threshold = huber_threshold(
        objective, timesteps, noise_scheduler.alphas_cumprod, int(noise_scheduler.config.num_train_timesteps)
    )
    loss = elementwise_loss(pred.float(), target.float(), objective.loss_type, threshold)
    per_sample = loss.mean(dim=list(range(1, loss.ndim)))
    snr = scheduler_snr(noise_scheduler) if _reads_snr(objective) else None
    return weighted_loss(per_sample, timesteps, snr, objective, v_prediction, sample_weights).mean()


# --- after each update ----------------------------------------------------------------------


class NormReport(NamedTuple):
    """What max-norm regularisation did: modules rescaled, the mean and largest norm after it."""

    keys_scaled: int
    mean_norm: float
    max_norm: float


def lora_pairs(params: dict[str, Any], alphas: dict[str, float]) -> list[tuple[Any, Any, Any]]:
    """(down, up, alpha / rank) of every trained LoRA layer: peft's lora_A / lora_B of one module,
    networks/lora.py's grouping. `alphas`: each layer's alpha by ``part.module.path`` (the names of
    `params` less their ``.lora_A.…`` tail, as lora_sched.train.lora.lora_alphas gives them); the
    scale is computed as sd-scripts computes it, a float32 alpha over the rank."""
    import torch

    pairs = []
    for name, down in params.items():
        path, found, tail = name.partition(".lora_A.")
        if found:
            alpha = torch.tensor(float(alphas[path]), dtype=torch.float32)
            pairs.append((down, params[f"{path}.lora_B.{tail}"], alpha / down.shape[0]))
    return pairs


def max_norm_regularize(pairs: list[tuple[Any, Any, Any]], max_norm: float) -> NormReport:
    """Shrink every module whose product scale x up @ down has a norm above `max_norm` back to it,
    up and down each by the square root of the ratio (networks/lora.py's
    apply_max_norm_regularization, the `scale_weight_norms` option)."""
    import torch

    norms, keys_scaled = [], 0
    with torch.no_grad():
        for down, up, scale in pairs:
            product = _up_down_product(down.detach(), up.detach()) * scale.to(down.device)
            norm = product.norm().clamp(min=max_norm / 2)
            ratio = torch.clamp(norm, max=max_norm).cpu() / norm.cpu()
            if ratio != 1:
                keys_scaled += 1
                root = ratio**0.5
                up.mul_(root.to(up.device))
                down.mul_(root.to(down.device))
            norms.append((product.norm() * ratio.to(product.device)).item())
    return NormReport(keys_scaled, sum(norms) / len(norms), max(norms))


def _up_down_product(down: Any, up: Any) -> Any:
    """The weight delta up @ down of a linear, 1x1 or 3x3 convolution LoRA module."""
    import torch

    if up.shape[2:] == (1, 1) and down.shape[2:] == (1, 1):
        return (up.squeeze(2).squeeze(2) @ down.squeeze(2).squeeze(2)).unsqueeze(2).unsqueeze(3)
    if up.shape[2:] == (3, 3) or down.shape[2:] == (3, 3):
        return torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)
    return up @ down


def denoising_loss(
    unet: Any,
    condition: Any,
    noise_scheduler: Any,
    data: Any,
    rows: list[int],
    gen: Any,
    noise_steps: int,
    prediction: str,
    device: Any,
    objective: Objective | None = None,
    sample_weights: Any = None,
) -> Any:
    """Denoising loss of one micro-batch (`data`: lora_sched.train.data.CachedData, or a batch drawn
    from it): the loss between the UNet output and eps (or v) at random t, with the noise, timesteps
    and weighting of `objective` (None: plain MSE) and `sample_weights` (shape (batch,), sd-scripts'
    loss_weights; None: all 1). Training steps call it, and a validation with its timestep fixed."""
    objective = objective or Objective()
    latents = data.latents[rows].to(device)  # a no-op for the training cache, which is on the device
    drawn = draw_noised_batch(latents, noise_scheduler, objective, gen, noise_steps)
    # a trained text encoder runs every step; a frozen one was run once, when the data was cached
    embeddings, extra = condition(data, rows, device)
    pred = unet(drawn.noisy, drawn.timesteps, embeddings, **extra).sample
    if prediction == "epsilon":
        target = drawn.noise
    else:
        target = noise_scheduler.get_velocity(latents, drawn.noise, drawn.timesteps)
    v_prediction = prediction == "v_prediction"
    return objective_loss(pred, target, drawn.timesteps, noise_scheduler, objective, v_prediction, sample_weights)

"""Sample prompts encoded as sd-scripts' SD 1.x / 2.x sampling pipeline encodes them
(library/lpw_stable_diffusion.py): bracket weights, and prompts longer than one 75-token window.

Each prompt's pieces (`lora_sched.config.prompts.prompt_weights`) are tokenized one by one, without
their start and end tokens, up to 225 tokens. A prompt and its negative prompt share one length:
the longer one's, rounded up to whole windows of 75 tokens (at most 3). Each window is encoded
between a start and an end token as the text encoder's 77 positions, the windows' states are laid
end to end, the states of each token are multiplied by its weight, and the whole is rescaled so that
its mean is the unweighted one. SDXL samples are drawn from their text by diffusers' pipeline.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from lora_sched.config.prompts import prompt_weights
from lora_sched.train.text_encoding import encode_sd_text

log = logging.getLogger(__name__)

#: Windows of 75 tokens a prompt may fill (sd-scripts' max_embeddings_multiples).
MAX_WINDOWS = 3


def weighted_sd_prompts(
    tokenizer: Any, text_encoder: Any, prompt: str, negative: str | None, guided: bool, clip_skip: int | None
) -> dict[str, Any]:
    """The pipeline's `prompt_embeds` (and `negative_prompt_embeds` when `guided`: a guidance scale
    above 1, where the negative prompt is drawn against; a missing one is "")."""
    import torch

    window = tokenizer.model_max_length - 2
    texts = [prompt, negative or ""] if guided else [prompt]
    rows = [_weighted_ids(tokenizer, text, window * MAX_WINDOWS) for text in texts]
    longest = max(len(ids) for ids, _ in rows)
    windows = max(1, min(MAX_WINDOWS, (longest - 1) // window + 1))
    device = next(text_encoder.parameters()).device
    embeds = []
    for ids, weights in rows:
        padded_ids, padded_weights = _padded(ids, weights, windows, window, tokenizer)
        states = _encode_windows(
            text_encoder, torch.tensor([padded_ids], device=device), windows, window, tokenizer, clip_skip
        )
        embeds.append(_reweighted(states, torch.tensor([padded_weights], dtype=states.dtype, device=device)))
    shown = {"prompt_embeds": embeds[0]}
    if guided:
        shown["negative_prompt_embeds"] = embeds[1]
    return shown


def _weighted_ids(tokenizer: Any, text: str, limit: int) -> tuple[list[int], list[float]]:
    """The prompt's token ids without start and end tokens, and each one's weight, cut at `limit`."""
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in prompt_weights(text):
        piece_ids = tokenizer(piece).input_ids[1:-1]
        ids += piece_ids
        weights += [weight] * len(piece_ids)
        if len(ids) > limit:
            break
    if len(ids) > limit:
        _say_cut(text, limit)
    return ids[:limit], weights[:limit]


@functools.cache  # once per prompt, not at every sampling point
def _say_cut(text: str, limit: int) -> None:
    log.warning(f"notice: a sample prompt is cut at {limit} tokens, as sd-scripts cuts it: {text[:60]!r}...")


def _padded(ids: list[int], weights: list[float], windows: int, window: int, tokenizer: Any) -> tuple[list, list]:
    """The ids between a start token and end tokens up to `windows` windows; the weights laid out as
    the windows' states are (a start and an end position of weight 1 around each window's tokens)."""
    length = window * windows + 2
    padded_ids = [tokenizer.bos_token_id, *ids] + [tokenizer.eos_token_id] * (length - 1 - len(ids))
    states = windows * (window + 2)
    laid_out: list[float] = []
    if weights:
        for start in range(0, window * windows, window):
            laid_out += [1.0, *weights[start : start + window], 1.0]
    laid_out += [1.0] * (states - len(laid_out))
    return padded_ids, laid_out


def _encode_windows(
    text_encoder: Any, ids: Any, windows: int, window: int, tokenizer: Any, clip_skip: int | None
) -> Any:
    """The states of each window of 75 ids, given their own start and end token, end to end."""
    import torch

    skip = None if clip_skip in (None, 1) else clip_skip
    if windows == 1:
        return encode_sd_text(text_encoder, ids, skip)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    parts = []
    for start in range(0, window * windows, window):
        chunk = ids[:, start : start + window + 2].clone()
        chunk[:, 0] = ids[0, 0]
        if pad == eos:  # SD 1.x's tokenizer pads with its end token
            chunk[:, -1] = ids[0, -1]
        else:  # SD 2.x's pads with its own token: a window cut mid-prompt still ends on an end token
            for row in chunk:
                if row[-1] != eos and row[-1] != pad:
                    row[-1] = eos
                if row[1] == pad:
                    row[1] = eos
        parts.append(encode_sd_text(text_encoder, chunk, skip))
    return torch.cat(parts, dim=1)


def _reweighted(states: Any, weights: Any) -> Any:
    """states x each token's weight, rescaled to the unweighted mean (in place, as sd-scripts does).

    Two departures, both where sd-scripts' formula divides by zero: a prompt without weights is left
    as it is (its formula multiplies by 1 and by mean / mean, which is 1 unless the mean is 0), and a
    weighted mean of 0 keeps the weighted states unscaled. A mean of exactly 0 is what an encoder
    whose final layer norm has no bias gives (an untrained model's); sd-scripts then draws NaN."""
    import torch

    if bool((weights == 1.0).all()):
        return states
    before = states.float().mean(dim=(-2, -1)).to(states.dtype)
    states *= weights.unsqueeze(-1)
    after = states.float().mean(dim=(-2, -1)).to(states.dtype)
    scale = torch.where(after == 0, torch.ones_like(after), before / after)
    states *= scale.unsqueeze(-1).unsqueeze(-1)
    return states

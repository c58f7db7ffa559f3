"""How captions become the UNet's text conditioning, as sd-scripts computes it: `clip_skip` and
`max_token_length` (library/strategy_base.py, strategy_sd.py, strategy_sdxl.py; the same rules as
train_util's get_hidden_states / get_hidden_states_sdxl).

Tokens: a caption is cut to 75 tokens between BOS and EOS (CLIP's 77). With max_token_length 150 or
225 it is tokenized to 152 / 227 ids and split into 2 / 3 chunks of 77: BOS, the next 75 ids, and
the caption's last id (EOS, or padding). When the tokenizer pads with something other than EOS
(SD 2.x, SDXL's second tokenizer), a chunk whose last caption id is a word gets EOS as its end, and
a chunk that starts with padding gets EOS as its first id, so every chunk reads as a caption.

States: the chunks are encoded as a batch and their hidden states put back in one row: BOS of the
first chunk, the 75 inner states of every chunk, the last state of the last chunk (77, 152 or 227
states). sd-scripts' SD 2.x branch means to copy the padding state over an empty chunk's EOS, but it
compares a token id with the EOS *string*, which is never equal: it changes nothing, so neither
does this code.

SD 1.x / 2.x: the encoder's last hidden state, or with ``clip_skip = n`` its n-th hidden state from
the end put through the final layer norm (n = 1 is the last state; n = 2, the usual "clip skip 2",
the penultimate). SDXL always reads the penultimate states of both encoders and the second one's
projected pooled output at the first EOS of the first chunk; sd-scripts ignores clip_skip there
(with a warning), and so does lora_sched.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lora_sched.errors import ConfigError, problem

#: Caption tokens in one CLIP chunk (77 less BOS and EOS).
CHUNK_TOKENS = 75


class TextOptions(NamedTuple):
    """clip_skip and max_token_length of a run (None: sd-scripts' defaults, last layer and 75 tokens)."""

    clip_skip: int | None = None
    max_token_length: int | None = None  #: 150 or 225; None for 75

    @property
    def chunks(self) -> int:
        """How many 77-token chunks a caption is encoded in."""
        return (self.max_token_length or CHUNK_TOKENS) // CHUNK_TOKENS


#: sd-scripts' defaults: the last layer, captions cut at 75 tokens.
DEFAULT_TEXT = TextOptions()


def text_options(values: dict) -> TextOptions:
    """The config's clip_skip and max_token_length (the key table bounds them: clip_skip >= 1,
    max_token_length 75, 150 or 225; 75 is sd-scripts' default length, the same as none)."""
    clip_skip = values.get("clip_skip")
    length = values.get("max_token_length")
    return TextOptions(
        clip_skip=int(clip_skip) if clip_skip is not None else None,
        max_token_length=int(length) if length is not None and int(length) > CHUNK_TOKENS else None,
    )


def check_clip_skip(options: TextOptions, text_encoder: Any) -> None:
    """Refuse a clip_skip deeper than the encoder (CLIP-L has 12 layers, tiny-sd's encoder 3)."""
    layers = int(_unwrap(text_encoder).config.num_hidden_layers)
    if options.clip_skip is not None and options.clip_skip > layers:
        raise ConfigError(
            problem(
                "clip_skip",
                f"a layer of this model's text encoder, 1 to {layers}",
                options.clip_skip,
                "clip_skip = 2 (the penultimate layer) is the usual choice; remove the key for the last layer",
            )
        )


# -- tokens ------------------------------------------------------------------------------------
def tokenize_chunks(tokenizer: Any, captions: list[str], max_token_length: int) -> Any:
    """Token ids (N, chunks, 77) of `captions` for max_token_length 150 / 225 (see the module doc)."""
    import torch

    length = max_token_length + 2
    ids = tokenizer(captions, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    return torch.stack([split_chunks(row, tokenizer) for row in ids])


def split_chunks(ids: Any, tokenizer: Any) -> Any:
    """One caption's ids (max_token_length + 2) as chunks of 77 (sd-scripts' _get_input_ids)."""
    import torch

    width = int(tokenizer.model_max_length)
    eos, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
    chunks = []
    for start in range(1, len(ids) - width + 2, width - 2):
        chunk = torch.cat([ids[:1], ids[start : start + width - 2], ids[-1:]])
        if pad != eos:  # SD 2.x / SDXL: padding differs from EOS
            if int(chunk[-2]) not in (eos, pad):  # the caption runs on past this chunk: end it with EOS
                chunk[-1] = eos
            if int(chunk[1]) == pad:  # an empty chunk: BOS EOS PAD ..., as a blank caption reads
                chunk[1] = eos
        chunks.append(chunk)
    return torch.stack(chunks)


# -- states ------------------------------------------------------------------------------------
def merge_chunks(states: Any, chunks: int) -> Any:
    """(N, chunks * 77, C) states -> (N, chunks * 75 + 2, C): the first BOS, every chunk's inner 75,
    the last chunk's final state."""
    import torch

    if chunks == 1:
        return states
    width = states.shape[1] // chunks
    parts = [states[:, :1]]
    parts += [states[:, start : start + width - 2] for start in range(1, states.shape[1], width)]
    parts.append(states[:, -1:])
    return torch.cat(parts, dim=1)


def encode_sd_text(text_encoder: Any, ids: Any, clip_skip: int | None = None) -> Any:
    """SD 1.x / 2.x conditioning of token ids (N, 77) or chunks (N, chunks, 77)."""
    chunks = ids.shape[1] if ids.dim() == 3 else 1
    rows = ids.shape[0]
    flat = ids.reshape(-1, ids.shape[-1])
    if clip_skip is None:
        states = text_encoder(flat)[0]
    else:
        hidden = text_encoder(flat, output_hidden_states=True).hidden_states[-clip_skip]
        states = final_norm(text_encoder, hidden)
    return merge_chunks(states.reshape(rows, -1, states.shape[-1]), chunks)


def encode_sdxl_text(text_encoder: Any, text_encoder_2: Any, ids_1: Any, ids_2: Any, eos_id: int) -> tuple[Any, Any]:
    """(penultimate hidden states of both encoders side by side, encoder 2's projected pooled output),
    for token ids (N, 77) or chunks (N, chunks, 77).

    The pooled output is read at the first end-of-text token (the tokenizer's id), as sd-scripts
    does: SDXL's text_encoder_2 config names a legacy EOS id that is not the tokenizer's. With
    chunks, the first chunk's. The projection runs in its weights' type (its input is cast), as
    sd-scripts' pool workaround does, and its output takes the hidden states' type.
    """
    import torch

    rows = ids_1.shape[0]
    chunks = ids_1.shape[1] if ids_1.dim() == 3 else 1
    flat_1, flat_2 = ids_1.reshape(-1, ids_1.shape[-1]), ids_2.reshape(-1, ids_2.shape[-1])
    out_1 = text_encoder(flat_1, output_hidden_states=True)
    out_2 = text_encoder_2(flat_2, output_hidden_states=True)
    first_eos = (flat_2 == eos_id).int().argmax(dim=-1)
    last_state = out_2.last_hidden_state
    last = last_state[torch.arange(flat_2.shape[0], device=flat_2.device), first_eos]
    projection = _unwrap(text_encoder_2).text_projection
    pooled = projection(last.to(projection.weight.dtype)).to(last_state.dtype)[::chunks]
    states = []
    for out in (out_1, out_2):
        penultimate = out.hidden_states[-2]
        states.append(merge_chunks(penultimate.reshape(rows, -1, penultimate.shape[-1]), chunks))
    return torch.cat(states, dim=-1), pooled


def final_norm(text_encoder: Any, hidden: Any) -> Any:
    """The encoder's final layer norm applied to an earlier state (clip_skip), in float32.

    Float32 is what autocast gives layer_norm on a GPU, where sd-scripts runs it; it is also needed:
    under mixed precision the prepared encoder returns float32 states (accelerate converts its outputs)
    while the norm's weights are half, and a CPU's autocast leaves layer_norm's types as they are.
    Without mixed precision it is the norm's own forward, bit for bit.
    """
    import torch.nn.functional as F

    norm = final_layer_norm(text_encoder)
    weight, bias = norm.weight.float(), norm.bias.float()
    return F.layer_norm(hidden.float(), norm.normalized_shape, weight, bias, norm.eps)


def final_layer_norm(text_encoder: Any) -> Any:
    """The encoder's final layer norm (transformers 5 flattened CLIPTextModel; 4.x nests it in text_model)."""
    model = _unwrap(text_encoder)
    return getattr(model, "text_model", model).final_layer_norm


def _unwrap(module: Any) -> Any:
    """The model inside a DDP wrapper (accelerate's prepare), for its config and submodules."""
    return getattr(module, "module", module)

"""The LoRA network's settings as sd-scripts' networks.lora reads them: network_dim / network_alpha /
network_dropout, and the "key=value" entries of network_args (read here and nowhere else).

sd-scripts splits each entry at its first "=" and keeps the value as text; create_network converts
the ones it knows (``int(conv_dim)``, ``float(rank_dropout)``, ...) and ignores every other name.
lora-sched applies conv_dim / conv_alpha, rank_dropout / module_dropout and the block-wise ranks
(block_dims, block_alphas, conv_block_dims, conv_block_alphas) exactly; an entry it does not apply
(block-wise LRs, LoRA+, a name networks.lora ignores) is refused here, before anything is built,
rather than training a LoRA other than the one the file describes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lora_sched.errors import ConfigError, did_you_mean, problem

#: Entries of network_args that networks.lora reads and lora-sched applies.
APPLIED = (
    "conv_dim",
    "conv_alpha",
    "rank_dropout",
    "module_dropout",
    "block_dims",
    "block_alphas",
    "conv_block_dims",
    "conv_block_alphas",
)
#: Entries networks.lora reads that lora-sched refuses: what each would change, and what to do instead.
REFUSED = {
    "down_lr_weight": "per-block learning rates of the UNet's down blocks (one optimizer group per block)",
    "mid_lr_weight": "per-block learning rates of the UNet's mid block (one optimizer group per block)",
    "up_lr_weight": "per-block learning rates of the UNet's up blocks (one optimizer group per block)",
    "block_lr_zero_threshold": "which blocks the per-block learning rates leave out",
    "loraplus_lr_ratio": "LoRA+: the lora_up weights learn at a multiple of the LR (extra optimizer groups)",
    "loraplus_unet_lr_ratio": "LoRA+ for the UNet: its lora_up weights learn at a multiple of the LR",
    "loraplus_text_encoder_lr_ratio": "LoRA+ for the text encoders: their lora_up weights learn at a multiple of LR",
}
_REFUSED_HINT = (
    "lora-sched train does not implement block-wise learning rates or LoRA+; train this file with "
    "sd-scripts, or remove the entry to train with one LR per model part"
)
#: Blocks block_dims and its kin count (networks.lora: 12 down + 1 mid + 12 up for SD 1.x / 2.x;
#: SDXL: 1 + 9 input + 3 middle + 9 output + 1 out).
NUM_BLOCKS = {False: 25, True: 23}


@dataclass(frozen=True)
class NetworkSettings:
    """What shapes and trains the LoRA modules (None: not set, as sd-scripts' None)."""

    dim: int  #: network_dim: rank of every Linear and 1x1 Conv2d
    alpha: float  #: network_alpha
    conv_dim: int | None = None  #: rank of the 3x3 convs; set (even 0), the ResNet blocks are walked too
    conv_alpha: float | None = None
    dropout: float | None = None  #: network_dropout: dropout on the rank-r activations
    rank_dropout: float | None = None  #: drops whole ranks per sample, rescaling the rest
    module_dropout: float | None = None  #: skips a whole module's LoRA per forward call
    block_dims: tuple[int, ...] | None = None  #: rank per UNet block (NUM_BLOCKS entries)
    block_alphas: tuple[float, ...] | None = None
    conv_block_dims: tuple[int, ...] | None = None
    conv_block_alphas: tuple[float, ...] | None = None

    @property
    def has_dropout(self) -> bool:
        """Whether any dropout acts in training (then the LoRA layers run sd-scripts' forward)."""
        return any(p is not None for p in (self.dropout, self.rank_dropout, self.module_dropout))

    def block_settings(self, is_sdxl: bool) -> tuple[list[int], list[float], list[int] | None, list[float] | None]:
        """(block_dims, block_alphas, conv_block_dims, conv_block_alphas) filled in as
        get_block_dims_and_alphas does: unset dims / alphas are network_dim / network_alpha, unset
        conv ones conv_dim / conv_alpha (conv_alpha 1.0 when only conv_block_dims is given)."""
        count = NUM_BLOCKS[is_sdxl]
        dims = list(self.block_dims) if self.block_dims is not None else [self.dim] * count
        alphas = list(self.block_alphas) if self.block_alphas is not None else [self.alpha] * count
        conv_dims: list[int] | None = None
        conv_alphas: list[float] | None = None
        if self.conv_block_dims is not None:
            conv_dims = list(self.conv_block_dims)
            fallback = 1.0 if self.conv_alpha is None else self.conv_alpha
            conv_alphas = list(self.conv_block_alphas) if self.conv_block_alphas is not None else [fallback] * count
        elif self.conv_dim is not None:
            conv_dims = [self.conv_dim] * count
            conv_alphas = [1.0 if self.conv_alpha is None else self.conv_alpha] * count
        for name, values in (("block_dims", dims), ("block_alphas", alphas), ("conv_block_dims", conv_dims)):
            if values is not None and len(values) != count:
                raise ConfigError(
                    problem(
                        f"network_args.{name}",
                        f"{count} comma-separated values (one per UNet block of {_family(is_sdxl)})",
                        len(values),
                        "networks.lora counts 12 down + 1 mid + 12 up blocks for SD 1.x / 2.x, "
                        "and 1 + 9 input + 3 middle + 9 output + 1 out for SDXL",
                    )
                )
        if conv_alphas is not None and len(conv_alphas) != count:
            raise ConfigError(
                problem("network_args.conv_block_alphas", f"{count} comma-separated values", len(conv_alphas))
            )
        return dims, alphas, conv_dims, conv_alphas

    @property
    def uses_blocks(self) -> bool:
        """block_dims set: ranks come per block (sd-scripts' pattern 3 / 4 in LoRANetwork)."""
        return self.block_dims is not None


def _family(is_sdxl: bool) -> str:
    return "SDXL" if is_sdxl else "SD 1.x / 2.x"


def network_settings(values: Mapping[str, Any]) -> NetworkSettings:
    """The network a config describes; a network_args entry lora-sched does not apply, or a value
    sd-scripts could not convert, is a ConfigError naming the entry."""
    entries = _entries(values.get("network_args") or [])
    named = dict(entries)
    for name, _ in entries:
        if name not in APPLIED:
            raise ConfigError(_refusal(name, named[name]))
    dropout = values.get("network_dropout")
    conv_dim = _number(named, "conv_dim", int, low=0)
    conv_alpha = _number(named, "conv_alpha", float, low=0.0)
    if conv_dim is not None and conv_alpha is None:
        conv_alpha = 1.0  # create_network's default once conv_dim is set
    block_dims = _numbers(named, "block_dims", int)
    if block_dims is None:
        for name in ("block_alphas", "conv_block_dims", "conv_block_alphas"):
            if name in named:
                raise ConfigError(
                    problem(
                        f"network_args.{name}",
                        "block_dims set too (networks.lora reads the block-wise settings only with block_dims)",
                        named[name],
                        "add block_dims, or remove the entry: sd-scripts ignores it",
                    )
                )
    return NetworkSettings(
        dim=int(values["network_dim"]),
        alpha=float(values["network_alpha"]),
        conv_dim=conv_dim,
        conv_alpha=conv_alpha,
        dropout=None if dropout is None else float(dropout),
        rank_dropout=_number(named, "rank_dropout", float, low=0.0, high=1.0, high_open=True),
        module_dropout=_number(named, "module_dropout", float, low=0.0, high=1.0),
        block_dims=block_dims,
        block_alphas=_numbers(named, "block_alphas", float),
        conv_block_dims=_numbers(named, "conv_block_dims", int),
        conv_block_alphas=_numbers(named, "conv_block_alphas", float),
    )


def _entries(items: Sequence[Any]) -> list[tuple[str, str]]:
    """(name, value text) of each "name=value" entry, split at the first "=" as sd-scripts does.

    sd-scripts does not strip the name: " conv_dim=4" names " conv_dim", which it never reads; that
    is refused rather than guessed."""
    out = []
    for i, item in enumerate(items):
        name, eq, text = str(item).partition("=")
        if not eq or not name:
            raise ConfigError(problem(f"network_args[{i}]", 'a "key=value" string', item))
        if name != name.strip():
            raise ConfigError(
                problem(
                    f"network_args[{i}]",
                    "a name without spaces around it",
                    item,
                    f'sd-scripts reads the name with its spaces and ignores it; write "{name.strip()}={text.strip()}"',
                )
            )
        out.append((name, text))
    return out


def _refusal(name: str, text: str) -> Any:
    """The problem of an entry lora-sched does not apply: what it would change and what to do."""
    key = f"network_args.{name}"
    if name in REFUSED:
        return problem(key, f"no {name} ({REFUSED[name]})", text, _REFUSED_HINT)
    if name == "dropout":
        return problem(
            key,
            "network_dropout (networks.lora does not read a network_args dropout)",
            text,
            f"sd-scripts ignores it; write network_dropout = {text.strip()} to drop LoRA activations",
        )
    known = did_you_mean(name, list(APPLIED) + list(REFUSED))
    return problem(
        key,
        "an option of networks.lora (" + ", ".join(APPLIED) + ")",
        text,
        known
        or "sd-scripts ignores names networks.lora does not know (LyCORIS options need network_module = "
        "lycoris.kohya); remove it",
    )


def _number(
    named: Mapping[str, str], name: str, kind: type, low: float, high: float | None = None, high_open: bool = False
) -> Any:
    """``kind(text)`` as create_network converts it (int("4.0") fails there too), within bounds."""
    if name not in named:
        return None
    text = named[name]
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(
            problem(f"network_args.{name}", f"{'an integer' if kind is int else 'a number'}", text)
        ) from None
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or value < low or too_high:
        bound = f"at least {low}" + ("" if high is None else f" and {'below' if high_open else 'at most'} {high}")
        raise ConfigError(
            problem(f"network_args.{name}", f"{'an integer' if kind is int else 'a number'} {bound}", text)
        )
    return value


def _numbers(named: Mapping[str, str], name: str, kind: type) -> tuple[Any, ...] | None:
    """A comma-separated list, each item converted as networks.lora's parse_ints / parse_floats do."""
    if name not in named:
        return None
    try:
        values = tuple(kind(part) for part in named[name].split(","))
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ConfigError(problem(f"network_args.{name}", f"comma-separated {what}", named[name])) from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(problem(f"network_args.{name}", "values of at least 0", named[name]))
    if len(values) not in NUM_BLOCKS.values():  # which of the two fits is known once the model is loaded
        raise ConfigError(
            problem(
                f"network_args.{name}",
                "25 comma-separated values (SD 1.x / 2.x) or 23 (SDXL), one per UNet block",
                f"{len(values)} values",
            )
        )
    return values

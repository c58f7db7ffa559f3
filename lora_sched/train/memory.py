"""Resolution checks before the model is built: the size step it takes, and whether the data fits in memory.

Training keeps every image (RGB, 3 bytes a pixel), stacks them as float32 pixels (a list of
per-image arrays and the stacked tensor: 2 x 12 bytes a pixel), and runs the VAE over batches of
8, whose first convolution alone outputs ``block_out_channels[0]`` float32 channels at full size.
That sum is a lower bound of what caching needs: a run whose bound exceeds the memory available
(RAM plus free swap, and the GPU's free memory for the VAE part) cannot finish caching.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lora_sched.builtins import BUILTIN_BLOCKS
from lora_sched.errors import ConfigError, problem, raw

VAE_BATCH = 8  # lora_sched.train.data.cache_data's batch
_HOST_BYTES_PER_PIXEL = 3 + 2 * 3 * 4


def block_channels(model: str, part: str) -> tuple[int, ...]:
    """block_out_channels of the model's `part` ("vae" or "unet"), read from its config.json (a
    single file: from its tensor shapes) without building it; () when it cannot be read (the
    checks that need it are then skipped)."""
    if model in BUILTIN_BLOCKS:
        return BUILTIN_BLOCKS[model][part]
    if Path(os.path.expanduser(model)).is_file():
        from lora_sched.train.sources import block_channels as file_block_channels

        return file_block_channels(Path(os.path.expanduser(model)), part)
    try:
        path = Path(os.path.expanduser(model)) / part / "config.json"
        channels = json.loads(path.read_text(encoding="utf-8"))["block_out_channels"]
        return tuple(int(c) for c in channels)
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def resolution_multiple(model: str) -> int | None:
    """The size step the model takes: VAE downsampling x UNet downsampling (None if unknown)."""
    vae, unet = block_channels(model, "vae"), block_channels(model, "unet")
    if not vae or not unet:
        return None
    return 2 ** (len(vae) - 1) * 2 ** (len(unet) - 1)


def check_resolution(model: str, width: int, height: int, value: object) -> None:
    step = resolution_multiple(model)
    if step and (width % step or height % step):
        raise ConfigError(problem("resolution", f"multiples of {step} for this model", value))


def cache_bytes(num_images: int, width: int, height: int, channels: int) -> tuple[int, int]:
    """(host bytes, VAE bytes): a lower bound of the memory caching `num_images` images needs."""
    pixels = width * height
    return num_images * pixels * _HOST_BYTES_PER_PIXEL, min(VAE_BATCH, num_images) * channels * pixels * 4


def available_host_bytes() -> int | None:
    """MemAvailable + SwapFree on Linux; free physical pages elsewhere; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.strip()}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, KeyError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def available_gpu_bytes() -> int | None:
    """Free memory of the current CUDA device (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[0])


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(model: str, num_images: int, width: int, height: int, processes_here: int = 1) -> None:
    """ConfigError (key resolution) when caching cannot fit in the memory available now."""
    vae_blocks = block_channels(model, "vae")
    host, vae = cache_bytes(num_images, width, height, vae_blocks[0] if vae_blocks else 0)
    host *= processes_here  # every process on this machine caches the whole dataset
    gpu = available_gpu_bytes()
    if gpu is None:
        host, vae = host + vae * processes_here, 0
    for need, have, where in ((host, available_host_bytes(), "memory"), (vae, gpu, "GPU memory")):
        if have is not None and need > have:
            raise ConfigError(
                problem(
                    "resolution",
                    f"a size whose training data fits in {where} ({_gib(have)} available)",
                    raw(f"{width} x {height}: caching {num_images} image(s) needs at least {_gib(need)}"),
                    "lower the resolution (kohya's are 512 to 1536), or free memory",
                )
            )

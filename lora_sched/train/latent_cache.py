"""`cache_latents_to_disk`: each image's VAE latents in ``IMAGE.npz`` next to it, as sd-scripts keeps them.

A later run reads the file instead of running the VAE again. The file holds sd-scripts' fields
(``latents``: the latent distribution's mean, C x h x w float32, before the VAE's scaling factor;
``original_size``; ``crop_ltrb``), so sd-scripts reads it too, plus ``lora_sched_key``: a digest
of what the latents depend on: the pixels the VAE encodes (the image as fitted to its training
size or bucket, so an edited image, another resolution or other bucket settings all change it)
and the VAE encoder's weights. A file whose key differs, or that cannot be read, is encoded again
and replaced (sd-scripts' own files, which have no key, too). Files are written atomically (a
temporary file renamed over the old one), so an interrupted run never leaves half a file; a folder
that cannot be written keeps the latents in memory for this run, with a notice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_sched.config.writer import atomic_write_bytes

#: notices and progress: the command line shows them as "lora-sched: ..." lines (train/commands.py)
log = logging.getLogger(__name__)

#: (image file or None, the fitted PIL image, its bucket geometry or None)
Item = tuple[Path | None, Any, Any]
#: Bumped when the key's inputs or the file's layout change: older files are then encoded again.
FORMAT = "lora_sched-latents-1"


def vae_fingerprint(vae: Any) -> str:
    """A digest of the VAE encoder's weights (all the latents depend on; the decoder is not used)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in vae.state_dict().items():
        if name.startswith(("encoder.", "quant_conv.")):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            weights = tensor.detach().to("cpu")
            if weights.dtype == torch.bfloat16:  # NumPy has no bf16 (a VAE in bf16: mixed_precision)
                weights = weights.float()
            digest.update(weights.contiguous().numpy().tobytes())
    return digest.hexdigest()


def npz_path(image: Path) -> Path:
    """sd-scripts' name: the image's path with .npz in place of its extension."""
    return image.with_suffix(".npz")


class LatentDiskCache:
    """Reads and writes the latent files of one run (one VAE)."""

    def __init__(self, vae: Any) -> None:
        self.vae_digest = vae_fingerprint(vae)
        self.read = self.written = self.in_memory = 0
        self.unwritable: list[str] = []

    def key(self, pixels: bytes, width: int, height: int) -> str:
        """The digest a file must carry to be used: the format, the VAE encoder, the size, the pixels."""
        digest = hashlib.sha256()
        for part in (FORMAT, self.vae_digest, f"{width}x{height}"):
            digest.update(part.encode() + b"\0")
        digest.update(pixels)
        return digest.hexdigest()

    def load(self, image: Path, key: str) -> Any | None:
        """The latents stored for `image` under `key`, or None (no file, another key, unreadable)."""
        import numpy as np
        import torch

        try:
            with np.load(npz_path(image), allow_pickle=False) as npz:
                if "lora_sched_key" not in npz.files or str(npz["lora_sched_key"]) != key:
                    return None
                return torch.from_numpy(np.array(npz["latents"], dtype=np.float32))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, truncated, not an npz
            return None

    def save(self, image: Path, key: str, latents: Any, original_size: Any, crop_ltrb: Any) -> bool:
        """Write the file (atomically); False, noted for the report, when the folder refuses it."""
        import numpy as np

        buffer = io.BytesIO()
        np.savez(
            buffer,
            latents=latents.detach().to("cpu").float().numpy(),
            original_size=np.array(original_size),
            crop_ltrb=np.array(crop_ltrb),
            lora_sched_key=np.array(key),
        )
        try:
            atomic_write_bytes(npz_path(image), buffer.getvalue())
        except OSError as exc:
            self.unwritable.append(f"{npz_path(image)} ({exc.strerror or exc})")
            return False
        return True

    def latents(self, items: list[Item], encode: Callable[[list[int]], list[Any]]) -> list[Any]:
        """The unscaled latents of every (image file or None, fitted PIL image, geometry), in order: read where
        a file with the right key exists, else `encode(positions)` (one call for all the others) and
        written. An item without a file (built-in data) is encoded and kept in memory."""
        import numpy as np

        keys: list[str | None] = []
        for path, img, _ in items:
            keys.append(self.key(np.asarray(img).tobytes(), *img.size) if path is not None else None)
        found = [self.load(item[0], key) if key is not None else None for item, key in zip(items, keys)]
        missing = [i for i, x in enumerate(found) if x is None]
        self.read += len(items) - len(missing)
        if missing:
            saved: set[Path] = set()
            for i, latent in zip(missing, encode(missing)):
                found[i] = latent
                path, img, geometry = items[i]
                if path is None or path in saved:  # the same file twice (two subsets): one file, the first
                    self.in_memory += 1
                    continue
                saved.add(path)
                if self.save(path, keys[i], latent, *_sizes(img, geometry)):
                    self.written += 1
        return found

    def report(self) -> None:
        """One notice: how many latents were read, encoded and written, and what stayed in memory."""
        text = f"notice: cache_latents_to_disk: {self.read} latent file(s) read, {self.written} encoded and written"
        if self.in_memory:
            text += f"; {self.in_memory} image(s) without a file of their own (builtin data) kept in memory"
        if self.unwritable:
            more = len(self.unwritable) - 3
            shown = "; ".join(self.unwritable[:3]) + (f"; and {more} more" if more > 0 else "")
            text += f"; {len(self.unwritable)} could not be written, kept in memory: {shown}"
        log.info(text)


def _sizes(img: Any, geometry: Any) -> tuple[Any, Any]:
    """sd-scripts' original_size and crop_ltrb: from the bucket fitting, else the image as fitted."""
    if geometry is not None:
        return geometry.original_size, geometry.crop_ltrb
    width, height = img.size
    return (width, height), (0, 0, width, height)


def disk_cached_latents(vae: Any, examples: list, images: list, batch: int, scale: float) -> Any:
    """encode_latents with cache_latents_to_disk: the same latents (a tensor, or BucketLatents when
    sizes differ), read from IMAGE.npz files where they are current, encoded and written elsewhere."""
    import torch

    from lora_sched.train.buckets import BucketLatents, encode_latents

    cache = LatentDiskCache(vae)

    def encode(positions: list[int]) -> list[Any]:  # unscaled, as the files hold them
        encoded = encode_latents(vae, [images[i] for i in positions], batch, 1.0)
        return list(encoded.items) if isinstance(encoded, BucketLatents) else list(encoded)

    items = [(ex.path if ex.draw is None else None, img, ex.geometry) for ex, img in zip(examples, images)]
    unscaled = cache.latents(items, encode)
    cache.report()
    latents = [x.to(vae.device) * scale for x in unscaled]
    if len({tuple(x.shape) for x in latents}) == 1:
        return torch.stack(latents)
    return BucketLatents(latents)

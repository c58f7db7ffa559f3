"""The synthetic data sets of tests/realworld/: shared by tests/test_realworld.py and
tools/gen_sdscripts_golden.py (which runs under another Python), so both count the same images."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

CORPUS = Path(__file__).parent / "realworld"
GOLDEN = CORPUS / "golden"


def manifest() -> list[dict]:
    return json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["files"]


def png_bytes(size: int = 64) -> bytes:
    """A valid grey square PNG, written without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80" * (size * 3) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def build_dataset(root: Path, folders: dict[str, int]) -> None:
    """Each folder (relative to root, "" = root) gets its images, each with a .txt and a .caption caption."""
    image = png_bytes()
    for rel, count in folders.items():
        folder = root / rel if rel else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"img_{i:03d}.png").write_bytes(image)
            (folder / f"img_{i:03d}.txt").write_text("subject, photo", encoding="utf-8")
            (folder / f"img_{i:03d}.caption").write_text("subject, photo", encoding="utf-8")


def relocate(entry: dict, work: Path) -> tuple[Path, Path | None]:
    """Build the entry's data set under work/data and write its config (and dataset config) into work
    with data_root pointing there; returns (config, dataset config or None)."""
    data = work / "data"
    build_dataset(data, entry["folders"])
    out: list[Path | None] = []
    for key in ("config", "dataset_config"):
        if not entry[key]:
            out.append(None)
            continue
        text = (CORPUS / entry[key]).read_text(encoding="utf-8").replace(entry["data_root"], data.as_posix())
        target = work / entry[key]
        target.write_text(text, encoding="utf-8")
        out.append(target)
    return out[0], out[1]


def read_golden(name: str) -> tuple[list[str], dict[str, list[float]] | None, str | None]:
    """(header comments, {column: values} or None, sd-scripts' error or None)."""
    comments, rows, columns = [], [], None
    for line in (GOLDEN / f"{name}.csv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comments.append(line[1:].strip())
        elif columns is None:
            columns = line.split(",")
        else:
            rows.append(line.split(","))
    error = next((c[len("error: ") :] for c in comments if c.startswith("error: ")), None)
    if columns is None:
        return comments, None, error
    table = {col: [float(r[i]) for r in rows] for i, col in enumerate(columns)}
    return comments, table, error


def flat(doc: dict) -> dict:
    """A kohya TOML document's keys, its sections flattened (as sd-scripts reads them)."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    return out

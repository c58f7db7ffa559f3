"""Sample prompts in kohya sd-scripts' formats: what `sample_prompts` names, read without torch.

Three forms, chosen by the file's extension as sd-scripts chooses:

- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped. Options follow
  the prompt, each after `` --``: ``--n`` negative prompt, ``--w`` / ``--h`` size, ``--s`` steps,
  ``--l`` guidance scale, ``--d`` seed, ``--ss`` sampler.
- ``.toml``: a ``[prompt]`` table of shared values and ``[[prompt.subset]]`` entries, one per image.
- ``.json``: a list whose items are option lines (as in a .txt) or tables like a subset's.

Tables use sd-scripts' field names (prompt, negative_prompt, width, height, sample_steps, scale,
seed, sample_sampler). Defaults are sd-scripts': 512 x 512, 30 steps, scale 7.5, no fixed seed.
Sizes are rounded down to a multiple of 8 (at least 64) and steps kept within 1..1000, as there.

A prompt (and a negative prompt) may weight its words as sd-scripts' sampling pipeline reads them
(`prompt_weights`): ``(text)`` x 1.1, ``[text]`` / 1.1, ``(text:1.3)`` x 1.3; brackets nest and
multiply, one left open runs to the end, and ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are the characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_sched.config.samplers import DEFAULT_SAMPLER, SAMPLERS
from lora_sched.errors import ConfigError, FieldError, Problem, problem, raw

#: Longest prompt file read (a prompt list is a few KiB; anything larger is a wrong path).
MAX_BYTES = 1 << 20

#: Option letter in a .txt line -> (field, pattern of its value, converter).
_LINE_OPTIONS = {
    "w": ("width", r"\d+", int),
    "h": ("height", r"\d+", int),
    "d": ("seed", r"\d+", int),
    "s": ("sample_steps", r"\d+", int),
    "l": ("scale", r"[\d.]+", float),
    "n": ("negative_prompt", r".+", str),
    "ss": ("sample_sampler", r".+", str),
}
#: Options sd-scripts reads for other model families (flux guidance, controlnet, ...): no effect on SD.
_OTHER_MODEL_OPTIONS = ("g", "cn", "ctr", "rcfg", "fs")
_FIELD_TYPES = {
    "prompt": str,
    "negative_prompt": str,
    "width": int,
    "height": int,
    "sample_steps": int,
    "seed": int,
    "scale": float,
    "sample_sampler": str,
}


#: One piece of a weighted prompt, in the order tried: an escaped bracket or backslash, a lone
#: backslash, an opening bracket, a weight closing a round bracket, a closing bracket, plain text, a
#: colon that starts no weight.
_WEIGHT_PIECE = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:")
#: What a round bracket without a weight multiplies by (a square bracket divides by it).
BRACKET_WEIGHT = 1.1


def prompt_weights(text: str) -> list[tuple[str, float]]:
    """The prompt's text cut where its weight changes: [(text, weight), ...], never empty.

    As sd-scripts' sampling pipeline parses it: an opening bracket marks where the pieces it will
    weight begin; its closing bracket multiplies every piece since then (a weight such as ``:1.3)``
    closes the innermost round bracket); brackets still open at the end multiply what follows them;
    a closing bracket with none open is text. Neighbouring pieces of equal weight are joined. A
    weight that is not a number (``(a:1.2.3)``) raises FieldError (a ValueError): sd-scripts stops there."""
    pieces: list[list] = []  # [text, weight], weights multiplied in place as brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _WEIGHT_PIECE.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            pieces.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(pieces))
        elif piece == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            try:
                factor = float(weight)
            except ValueError:
                hint = "sd-scripts stops at this prompt; write a number, or \\( \\) for the brackets themselves"
                raise FieldError("a weight such as (text:1.2)", raw(f":{weight})"), hint) from None
            scale_from(round_open.pop(), factor)
        elif piece == ")" and round_open:
            scale_from(round_open.pop(), BRACKET_WEIGHT)
        elif piece == "]" and square_open:
            scale_from(square_open.pop(), 1 / BRACKET_WEIGHT)
        else:
            pieces.append([piece, 1.0])
    for start in round_open:
        scale_from(start, BRACKET_WEIGHT)
    for start in square_open:
        scale_from(start, 1 / BRACKET_WEIGHT)
    joined: list[list] = []
    for piece in pieces or [["", 1.0]]:
        if joined and joined[-1][1] == piece[1]:
            joined[-1][0] += piece[0]
        else:
            joined.append(piece)
    return [(str(piece_text), float(weight)) for piece_text, weight in joined]


@dataclass(frozen=True)
class SamplePrompt:
    """One image to draw at each sampling point; `index` numbers the file names (prompt position)."""

    index: int
    prompt: str
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512
    sample_steps: int = 30
    scale: float = 7.5
    seed: int | None = None
    sampler: str | None = None  # None: the run's sample_sampler
    line: int | None = field(default=None, compare=False)  # where the file states it (for messages)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as sd-scripts draws them: a multiple of 8, at least 64."""
        return max(64, self.width - self.width % 8), max(64, self.height - self.height % 8)


@dataclass
class PromptFile:
    prompts: list[SamplePrompt]
    warnings: list[Problem]


def read_prompt_file(path: str | Path) -> PromptFile:
    """Every prompt of a .txt / .toml / .json prompt file; ConfigError (file, line, field) when it
    cannot be read or a value is of the wrong type. Options sd-scripts ignores come back as warnings."""
    path = Path(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    found = PromptFile([], [])
    if suffix == ".txt":
        entries = _txt_entries(text)
    elif suffix == ".toml":
        entries = _toml_entries(text, path, found.warnings)
    elif suffix == ".json":
        entries = _json_entries(text, path)
    else:
        raise ConfigError(
            problem("sample_prompts", "a .txt, .toml or .json file (sd-scripts reads these three)", str(path))
        )
    for index, (line, entry) in enumerate(entries):
        found.prompts.append(_prompt_from(entry, index, path, line, found.warnings))
    return found


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(problem("sample_prompts", f"a prompt file of at most {MAX_BYTES} bytes", str(path)))
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(problem("sample_prompts", "an existing prompt file", str(path), "no such file")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(problem("sample_prompts", "a readable UTF-8 text file", str(path), str(exc))) from None


def _txt_entries(text: str) -> list[tuple[int, Any]]:
    """(line number, line) of each prompt line: sd-scripts skips blank lines and '#' comments."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip() and line[0] != "#"]


def _toml_entries(text: str, path: Path, warnings: list[Problem]) -> list[tuple[int | None, Any]]:
    """(line of its [[prompt.subset]], the subset over the shared [prompt] values) for each entry; the
    shared values are checked once, at the [prompt] line."""
    from lora_sched.config.toml_file import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_located(problem("sample_prompts", "valid TOML", raw(str(exc))), path, None)) from None
    shared = doc.get("prompt")
    subsets = shared.get("subset") if isinstance(shared, dict) else None
    if not isinstance(subsets, list) or not all(isinstance(s, dict) for s in subsets):
        raise ConfigError(
            _located(
                problem("prompt.subset", "a [prompt] table with [[prompt.subset]] entries (sd-scripts' form)", raw("")),
                path,
                None,
            )
        )
    shared_line = next(iter(_header_lines(text, r"\[\s*prompt\s*\]")), None)
    defaults = _check_table({k: v for k, v in shared.items() if k != "subset"}, "[prompt]", path, shared_line, warnings)
    lines = _header_lines(text, r"\[\[\s*prompt\.subset\s*\]\]")
    return [(lines[i] if i < len(lines) else None, {**defaults, **subset}) for i, subset in enumerate(subsets)]


def _header_lines(text: str, header: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if re.match(rf"\s*{header}", line)]


def _json_entries(text: str, path: Path) -> list[tuple[int, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(_located(problem("sample_prompts", "valid JSON", raw(exc.msg)), path, exc.lineno)) from None
    if not isinstance(doc, list):
        raise ConfigError(_located(problem("sample_prompts", "a JSON list of prompts", doc), path, None))
    return [(None, item) for item in doc]


def _prompt_from(entry: Any, index: int, path: Path, line: int | None, warnings: list[Problem]) -> SamplePrompt:
    if isinstance(entry, str):
        fields = _parse_line(entry, path, line, warnings)
    elif isinstance(entry, dict):
        fields = _check_table(entry, f"prompt {index}", path, line, warnings)
    else:
        found = problem(f"prompt {index}", "an option line or a table of prompt fields", entry)
        raise ConfigError(_located(found, path, line))
    sampler = fields.get("sample_sampler")
    if sampler is not None and sampler not in SAMPLERS:  # sd-scripts draws an unknown name with DDIM
        found = problem(f"prompt {index}: sampler", "one of " + ", ".join(SAMPLERS), sampler, "drawn with ddim")
        warnings.append(_located(found._replace(severity="warning"), path, line))
        fields["sample_sampler"] = DEFAULT_SAMPLER
    for key in ("prompt", "negative_prompt"):
        try:
            prompt_weights(fields.get(key) or "")
        except FieldError as exc:  # sd-scripts stops the run when it draws this prompt
            raise ConfigError(_located(exc.problem_at(f"prompt {index}: {key}"), path, line)) from None
    return _build(fields, index, line)


def _parse_line(text: str, path: Path, line: int | None, warnings: list[Problem]) -> dict[str, Any]:
    """sd-scripts' line form: the prompt, then options each introduced by " --"."""
    prompt, *options = text.split(" --")
    fields: dict[str, Any] = {"prompt": prompt}
    for option in options:
        letter, _, value = option.partition(" ")
        known = _LINE_OPTIONS.get(letter.lower())
        if known and re.match(known[1], value):
            name, pattern, convert = known
            fields[name] = convert(re.match(pattern, value).group(0))  # type: ignore[union-attr]
        elif letter.lower() not in _OTHER_MODEL_OPTIONS:
            expected = "an option sd-scripts reads (--n --w --h --s --l --d --ss)"
            found = problem("sample_prompts", expected, raw(f'"--{option}"'), "ignored, as sd-scripts does")
            warnings.append(_located(found._replace(severity="warning"), path, line))
    return fields


def _check_table(entry: dict, label: str, path: Path, line: int | None, warnings: list[Problem]) -> dict[str, Any]:
    """The fields sd-scripts reads, type-checked (an error at `line`); other keys are warnings."""
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        kind = _FIELD_TYPES.get(key)
        if kind is None:
            found = problem(f"{label}: {key}", "a prompt field sd-scripts reads", raw(key), "ignored")
            warnings.append(_located(found._replace(severity="warning"), path, line))
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            expected = {str: "a string", int: "an int", float: "a number"}[kind]
            raise ConfigError(_located(problem(f"{label}: {key}", expected, value), path, line))
        fields[key] = value
    return fields


def _build(fields: dict[str, Any], index: int, line: int | None) -> SamplePrompt:
    steps = fields.get("sample_steps", 30)
    return SamplePrompt(
        index=index,
        prompt=fields.get("prompt", ""),
        negative_prompt=fields.get("negative_prompt"),
        width=fields.get("width", 512),
        height=fields.get("height", 512),
        sample_steps=max(1, min(1000, steps)),
        scale=fields.get("scale", 7.5),
        seed=fields.get("seed"),
        sampler=fields.get("sample_sampler"),
        line=line,
    )


def _located(found: Problem, path: Path, line: int | None) -> Problem:
    return found.located(file=str(path), line=line)

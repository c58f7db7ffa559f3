"""Sample prompts as sd-scripts' SD sampling pipeline reads them: bracket weights and prompts over 75
tokens, against the outputs of sd-scripts' own functions (tests/data/sdscripts_prompts, regenerated
by tools/gen_sdscripts_prompt_golden.py), and a malformed weight refused where the prompt is written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lora_sched.config.prompts import prompt_weights, read_prompt_file
from lora_sched.errors import ConfigError

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "sdscripts_prompts" / "golden.safetensors"
sys.path.insert(0, str(ROOT / "tools"))
from gen_sdscripts_prompt_golden import CASES, PROMPTS  # noqa: E402
from golden_cli import read_tensor_golden  # noqa: E402


@pytest.fixture(scope="module")
def golden():
    return read_tensor_golden(GOLDEN)


@pytest.fixture(scope="module")
def encoder_and_tokenizers():
    """tiny-sd's text encoder, with tiny-sd's tokenizer (v1) and tiny-sdxl's second one (v2)."""
    pytest.importorskip("torch")
    from lora_sched.train.model import build_tiny_sd, build_tiny_sdxl

    sd = build_tiny_sd()
    return sd.text_encoder, {"v1": sd.tokenizer, "v2": build_tiny_sdxl().tokenizer_2}


def test_the_goldens_name_the_sd_scripts_commit_and_cases_they_came_from(golden):
    _, meta = golden
    assert meta["repository"] == "kohya-ss/sd-scripts"
    assert meta["commit"] == "48d368fa557731ad0488c07304dfeba8c07910eb"
    assert json.loads(meta["cases"]) == [list(case) for case in CASES]


@pytest.mark.parametrize("text", PROMPTS)
def test_a_prompt_is_cut_and_weighted_as_sd_scripts_parses_it(golden, text):
    expected = json.loads(golden[1]["parses"])[text]
    assert prompt_weights(text) == [(piece, weight) for piece, weight in expected]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_sd_sample_prompts_are_sd_scripts_weighted_long_prompt_states(golden, encoder_and_tokenizers, case):
    import torch

    from lora_sched.train.prompt_encoding import weighted_sd_prompts

    name, prompt, negative, guided, clip_skip, kind = case
    encoder, tokenizers = encoder_and_tokenizers
    with torch.no_grad():
        found = weighted_sd_prompts(tokenizers[kind], encoder, prompt, negative, guided, clip_skip)
    tensors = golden[0]
    assert torch.equal(found["prompt_embeds"], tensors[f"{name}.prompt"])
    if guided:
        assert torch.equal(found["negative_prompt_embeds"], tensors[f"{name}.negative"])
        assert found["prompt_embeds"].shape == found["negative_prompt_embeds"].shape  # one length for both
    else:
        assert "negative_prompt_embeds" not in found and f"{name}.negative" not in tensors


def test_the_windows_a_long_prompt_fills(golden):
    """77 states per window of 75 tokens: 1 for a short prompt, 2 for ~100 tokens, 3 at most."""
    tensors = golden[0]
    assert tensors["plain-v1.prompt"].shape[1] == 77
    assert tensors["long-v1.prompt"].shape[1] == 2 * 77
    assert tensors["long-negative-v1.prompt"].shape[1] == 2 * 77  # the negative prompt sets the length
    assert tensors["longer-than-225-v1.prompt"].shape[1] == 3 * 77


def test_a_prompt_over_225_tokens_is_cut_with_a_notice(encoder_and_tokenizers, caplog):
    import torch

    from lora_sched.train.prompt_encoding import weighted_sd_prompts

    encoder, tokenizers = encoder_and_tokenizers
    with torch.no_grad():
        weighted_sd_prompts(tokenizers["v1"], encoder, "x " * 300, None, True, None)
    assert "a sample prompt is cut at 225 tokens, as sd-scripts cuts it" in caplog.text


@pytest.mark.parametrize(
    ("line", "key", "found"),
    [
        ("a (red:1.2.3) circle --n lowres", "prompt 0: prompt", ":1.2.3)"),
        ("a red circle --n (bad:..)", "prompt 0: negative_prompt", ":..)"),
    ],
)
def test_a_weight_that_is_no_number_is_refused_at_its_line(tmp_path, line, key, found):
    """sd-scripts stops the run when it draws such a prompt (float() of the weight raises)."""
    path = tmp_path / "prompts.txt"
    path.write_text(f"# samples\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        read_prompt_file(path)
    text = str(exc.value)
    assert f"{path}:2: {key}: expected a weight such as (text:1.2), got {found}" in text, text


def test_weights_that_are_numbers_and_stray_colons_load():
    assert prompt_weights("(a:1)(b:-0.5) c: d") == [("a", 1.0), ("b", -0.5), (" c: d", 1.0)]


def test_a_zero_mean_never_divides():
    """sd-scripts rescales by mean / weighted mean: 0 / 0 (an untrained encoder's zero-mean states)
    would draw a NaN image; here an unweighted prompt is left as it is and a zero weighted mean unscaled."""
    torch = pytest.importorskip("torch")
    from lora_sched.train.prompt_encoding import _reweighted

    states = torch.tensor([[[1.0, -1.0], [2.0, -2.0]]])  # mean 0
    assert torch.equal(_reweighted(states.clone(), torch.ones(1, 2)), states)
    weighted = _reweighted(states.clone(), torch.tensor([[1.0, 1.5]]))
    assert torch.equal(weighted, states * torch.tensor([[[1.0], [1.5]]]))
    usual = _reweighted(states + 1.0, torch.tensor([[1.0, 2.0]]))  # mean 1: rescaled to keep it
    assert usual.mean().item() == pytest.approx(1.0)

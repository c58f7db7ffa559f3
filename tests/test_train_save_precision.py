"""save_precision: the LoRA file's tensors in the type sd-scripts' get_save_dtype names."""

from __future__ import annotations

import pytest
import torch

from lora_sched.api import loads_config
from lora_sched.errors import ConfigError
from lora_sched.train.finish import saved_precision


@pytest.mark.parametrize(
    ("name", "dtype"), [("float", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)]
)
def test_every_tensor_alphas_included_is_cast(name, dtype):
    tensors = {"lora_unet_x.lora_down.weight": torch.ones(2, 3) / 3, "lora_unet_x.alpha": torch.tensor(4.0)}
    out = saved_precision(tensors, name)
    assert {t.dtype for t in out.values()} == {dtype}
    assert torch.equal(out["lora_unet_x.lora_down.weight"], tensors["lora_unet_x.lora_down.weight"].to(dtype))


def test_unset_keeps_the_trained_type():
    tensors = {"a": torch.ones(2, dtype=torch.float32)}
    assert saved_precision(tensors, None) is tensors


def test_the_key_takes_sd_scripts_choices_only():
    assert loads_config('save_precision = "fp16"\n').values["save_precision"] == "fp16"
    with pytest.raises(ConfigError) as exc:
        loads_config('save_precision = "fp32"\n', "c.toml")
    assert exc.value.problems[0].key == "save_precision"

"""lora_sched: learning-rate schedules for LoRA fine-tuning that are right, visible and portable.

The package root stays light: importing it loads no NumPy, torch or widgets.
"""

__version__ = "0.1.0"


def load_config(path, **options):
    """Read and validate a TOML config, a custom torch class (``lr_scheduler_type``) included:
    `lora_sched.config.load_config` with the torch layer's custom class support passed in (torch is
    imported only when the file names such a class). Raises ConfigError listing every problem."""
    from lora_sched.config import load_config as load
    from lora_sched.torch.support import CUSTOM_CLASSES

    options.setdefault("custom_classes", CUSTOM_CLASSES)
    return load(path, **options)


def loads_config(text, source="<string>", **options):  # noqa: ANN001, ANN201
    """`load_config` for TOML text (`source` names it in messages)."""
    from lora_sched.config import loads_config as loads
    from lora_sched.torch.support import CUSTOM_CLASSES

    options.setdefault("custom_classes", CUSTOM_CLASSES)
    return loads(text, source, **options)

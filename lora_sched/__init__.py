"""lora_sched: learning-rate schedules for LoRA fine-tuning that are right, visible and portable.

The package root stays light: importing it loads no NumPy, torch or widgets.
"""

__version__ = "0.1.0"


"""`python -m lora_sched`: the CLI. Importing this module (a config naming it, a test) runs nothing."""

from lora_sched.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

from lora_sched.cli import main

raise SystemExit(main())

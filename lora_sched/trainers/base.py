"""What one trainer module declares, and what reading one of its files gives.

A trainer is one module of this package holding one `Trainer` (as a schedule is one spec):

* `recognise(document)`: how sure it is that a parsed file is its own (0: not its file);
* `read(document, facts)`: the `TrainerRun` the file starts: the LR of every param group at every
  step as that trainer really applies it (its quirks included), and the same curve as a lora_sched
  config where a catalogue schedule expresses it, which is what an export carries;
* `write(run, facts)`: the text of a file for that trainer that runs the curve of `run` (read from
  any trainer's file) exactly, or a ConfigError (a refusal) naming what the trainer cannot express
  and the nearest faithful choice.

Each quirk a module reproduces is a `Quirk` citing the trainer's own file and line at a recorded
commit; the module's goldens come from running that trainer's scheduler code at that commit.
"""

# No `from __future__ import annotations` here: NamedTuple fields with string annotations cost a
# compile() each when the class is made, on every `validate` (bench/bench_validate.py). The names
# only type checkers see are written as strings below.
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from lora_sched._lazy import np
from lora_sched.errors import Problem

if TYPE_CHECKING:
    from lora_sched.config.model import LoraConfig
    from lora_sched.schedules.resolve import ResolvedSchedule
    from lora_sched.trainers.documents import Document

# NamedTuples, not dataclasses: `validate` goes through this module, and dataclasses imports
# inspect (about half a bare interpreter's start-up; bench/bench_validate.py).


class RunFacts(NamedTuple):
    """What the command line says about a run whose data is not on this machine.

    samples_per_epoch: images x repeats of one epoch; steps_per_epoch: optimizer steps of one epoch
    of one process, as the trainer's own log shows it (it replaces the count from the data);
    num_processes: the GPUs the run uses (None: what the file says, else 1)."""

    samples_per_epoch: int | None = None
    steps_per_epoch: int | None = None
    num_processes: int | None = None
    dataset_config: str | None = None
    trust_scheduler_code: bool = False

    @property
    def processes(self) -> int:
        return self.num_processes or 1


class Citation(NamedTuple):
    """A line of a trainer's own source at a recorded commit."""

    repo: str  #: owner/name on GitHub
    path: str
    line: int
    commit: str  #: the full 40-digit commit the line was read at

    def __str__(self) -> str:
        return f"{self.repo} {self.path}:{self.line} @ {self.commit[:10]}"


class Quirk(NamedTuple):
    """Where a trainer's curve differs from what its own names promise.

    key: the setting of the file it concerns; what: what the trainer really does; instead: what
    to write for the curve the name suggests; cited: the trainer's code that does it."""

    key: str
    what: str
    instead: str
    cited: Citation

    def problem(self) -> Problem:
        """The quirk as a warning (located by the reader like any other problem)."""
        return Problem(self.key, "the curve its name promises", self.what, f"{self.instead} ({self.cited})", "warning")


#: The LR of each param group at given steps (an int64 array), in the trainer's group order.
GroupLRs = Callable[[Any], dict[str, Any]]


class TrainerRun(NamedTuple):
    """The LR schedule a trainer's file starts, as that trainer runs it.

    groups: base LR of each param group, in the order the trainer builds its optimizer's groups,
    keyed by role: "unet" (the denoiser: a UNet or a transformer), "text_encoder" (then
    "text_encoder_2" ...), so a writer for another trainer knows which is which.
    run_length: optimizer steps the run makes (None: epochs of data not known here, and why is in
    `counting`); counting: how they were counted, in words ("40 samples / batch 2 = 20 steps per
    epoch x 10 epochs"). schedule: the same curve as a lora_sched config, and resolved: its
    resolved schedule, whose multipliers give every group's LR (an export carries them); both None
    where no catalogue schedule expresses the curve: own_lrs gives the LRs then. warnings: the
    quirks that apply to this file and the reader's own warnings and notices, located in the file."""

    trainer: str
    source: str
    groups: Mapping[str, float]
    run_length: int | None
    counting: str
    schedule: "LoraConfig | None" = None
    resolved: "ResolvedSchedule | None" = None
    own_lrs: GroupLRs | None = None
    warnings: tuple[Problem, ...] = ()
    #: A one-line summary of the trainer's own settings ("cosine, warmup 100 steps, 3 cycles").
    summary: str = ""
    extra: Mapping[str, Any] = MappingProxyType({})
    #: roles trained inside another role's group ({"text_encoder": "unet"}: the text encoder's LoRA
    #: sits in the denoiser's group and follows its LR)
    shared: Mapping[str, str] = MappingProxyType({})

    @property
    def roles(self) -> dict[str, float]:
        """The base LR of every trained part by role, shared ones included (what a writer for another
        trainer must reproduce, whatever groups that trainer makes)."""
        return {**self.groups, **{role: self.groups[host] for role, host in self.shared.items()}}

    def lrs(self, steps: Any) -> dict[str, Any]:
        """The LR of every group at `steps` (any int array within the run), in group order, then each
        `shared` role at its host group's LR (the roles of `roles`, each with its curve)."""
        steps = np.asarray(steps, dtype=np.int64)
        if self.own_lrs is not None:
            out = self.own_lrs(steps)
        elif self.resolved is None:
            raise ValueError(f"the run length of {self.source} is unknown: {self.counting}")
        else:
            from lora_sched.config.preview import group_lrs_at

            wanted = steps.astype(np.float64)
            out = group_lrs_at(self.resolved, dict(self.groups), wanted, self.resolved.multipliers(wanted))
        for role, host in self.shared.items():
            if role not in out and host in out:
                out[role] = out[host]
        return out


class Trainer(NamedTuple):
    """One trainer's dialect: how its files are recognised, read and written."""

    name: str  #: the command line's name (lora_sched.trainers.MODULES)
    title: str  #: as its users write it ("OneTrainer")
    #: the file kinds it reads, by parser: "toml", "json", "yaml", "args" (command-line flags in a file)
    formats: tuple[str, ...]
    recognise: "Callable[[Document], int]"
    read: "Callable[[Document, RunFacts], TrainerRun]"
    #: a file for this trainer running `run`'s curve (any trainer's run), or a ConfigError refusing
    write: Callable[[TrainerRun, RunFacts], str]
    #: the file suffix of what `write` produces (".toml", ".json", ".yaml", ".sh")
    suffix: str
    summary: str = ""
    #: every quirk the module reproduces (for the docs; a read reports those that apply to its file)
    quirks: tuple[Quirk, ...] = ()

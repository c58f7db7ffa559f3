"""Every verb's --help shows examples, and an option means the same, with the same help, in every verb."""

from __future__ import annotations

import pytest

from lora_sched.cli import VERBS, build_parser


@pytest.mark.parametrize("verb", [v.name for v in VERBS])
def test_every_verb_help_shows_an_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser(only=verb).parse_args([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  lora-sched {verb}") for line in examples if line.strip())


def _help_of(verb: str, option: str) -> str | None:
    parser = build_parser(only=verb)
    sub = parser._subparsers._group_actions[0].choices[verb]  # argparse keeps sub-parsers here
    for action in sub._actions:
        if option in action.option_strings:
            return action.help
    return None


def test_shared_options_have_one_help_text() -> None:
    for option in ("--trust-scheduler-code", "--samples-per-epoch", "--dataset-config", "--from"):
        helps = {v.name: _help_of(v.name, option) for v in VERBS}
        given = {h for h in helps.values() if h is not None}
        assert len(given) == 1 and all(given), (option, helps)


def test_the_command_line_lists_every_trainer_the_registry_has() -> None:
    """cli.TRAINERS is kept beside the parser (building it imports no trainer): the same names, and
    each module's formats are the registry's."""
    from lora_sched.cli import TRAINERS
    from lora_sched.trainers import FORMATS, TRAINER_NAMES, get

    assert TRAINERS == TRAINER_NAMES
    assert {name: get(name).formats for name in TRAINER_NAMES} == FORMATS

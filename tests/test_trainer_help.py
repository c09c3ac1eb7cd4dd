"""The trainer verbs' help as a newcomer meets it: a real line for every flag, units, examples.

No TensorFlow: ``--help`` only builds the parser.
"""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from edgesight.trainer.commands.train import HELP
from edgesight.trainer.config import TrainConfig

VERBS = (("data",), ("data", "import"), ("data", "report"), ("train",), ("tune",), ("export",), ("evaluate",))


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_trainer_verb_has_examples_and_a_help_line_per_flag(verb: tuple[str, ...], cli) -> None:
    result = cli(*verb, "--help")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^examples:\n  edgesight ", result.stdout, re.M), result.stdout
    options = result.stdout.split("options:", 1)[1].split("examples:", 1)[0]
    # every option line "  --flag ..." carries its own help text (on the line or the next one)
    lines = options.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^  -", line):
            after_flag = re.sub(r"^  (-\S+( [A-Z|a-z_/.]+)?(, )?)+", "", line).strip()
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            assert after_flag or nxt.startswith(" " * 10), f"{verb}: no help for {line!r}"


def test_every_training_key_has_written_help_with_its_meaning() -> None:
    assert {f.name for f in fields(TrainConfig)} == set(HELP)
    for name, text in HELP.items():
        assert text != name.replace("_", " ") and len(text.split()) >= 4, name


def test_train_help_names_units_not_bare_numbers(cli) -> None:
    text = " ".join(cli("train", "--help").stdout.split())
    assert "fraction of a full turn (0.05 = 18 degrees) (default 0.05)" in text
    assert "square input size in pixels" in text and "learning rate" in text
    assert "--lr-head X" in text and "lr head (default" not in text and "l2 (default" not in text

"""`rnaernie`: the model-side command line. Each command is a module that registers on `app`."""

from __future__ import annotations

from rnaernie.cli.app import app
from rnaernie.console import run_command_line

# Importing a command module registers its command on `app`.
from rnaernie.cli import classify, embed, fold, interact, score, train, types  # noqa: E402,F401


def main() -> None:
    run_command_line(app)

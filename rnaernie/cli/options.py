"""Argument and option types shared by the `rnaernie` commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                         help="A folder made by rnaernie-convert, or a Hub model id.")]
InputArg = Annotated[str, typer.Argument(metavar="INPUT", show_default=False,
                                         help="FASTA (optionally .gz) or one sequence a line; '-' reads stdin.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary; only errors.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
OutPathOpt = Annotated[Path, typer.Option("--output", "-o", metavar="OUT", show_default=False, help="Output file.")]

"""Argument and option types shared by the `rnaernie` commands (one definition each; `--debug`, which
every console script has, is `rnaernie.console.DebugOpt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                         help="A folder made by rnaernie-convert, or a Hub model id.")]
InputArg = Annotated[str, typer.Argument(metavar="INPUT", show_default=False,
                                         help="FASTA (optionally .gz) or one sequence a line; '-' reads stdin.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary; only errors.")]
OutPathOpt = Annotated[Path, typer.Option("--output", "-o", metavar="OUT", show_default=False, help="Output file.")]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda|mps",
                                        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", metavar="float32|float16|bfloat16",
                                       help="Compute precision; outputs are float32 either way.")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="How many likely classes to keep, renormalised to sum 1.")]
SkipEmptyOpt = Annotated[bool, typer.Option("--skip-empty", help="Skip FASTA records without a sequence.")]
ClassifierArg = Annotated[str, typer.Argument(metavar="CLASSIFIER", show_default=False,
                                              help="A converted sequence-classifier folder, or a Hub model id.")]
ShardOpt = Annotated[Optional[str], typer.Option(
    "--shard", metavar="K/N", show_default=False,
    help="Only records K, K+N, K+2N, ... (K from 1): the K-th of N slices for a job array.")]

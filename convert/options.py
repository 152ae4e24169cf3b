"""Argument and option types shared by `rnaernie-convert` and `rnaernie-push` (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

CheckpointArg = Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="The Paddle model_state.pdparams file, or the official release's folder.",
                                               show_default=False)]
OutDirArg = Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Output folder (must not exist or be empty, unless --force).",
                                           show_default=False)]
RepoIdOpt = Annotated[Optional[str], typer.Option("--push-to-hub", metavar="ORG/NAME",
                                                  help="Push the folder to this Hub repository.")]
PrivateOpt = Annotated[bool, typer.Option("--private", help="Create the Hub repository as private.")]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub branch to push to.")]
CommitMessageOpt = Annotated[Optional[str], typer.Option("--commit-message", help="Hub commit message.")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", help="Hub token (default: HF_TOKEN or cached login).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would be pushed (files, sizes, card); no network.")]
AllowUnverifiedOpt = Annotated[bool, typer.Option("--allow-unverified",
                                                  help="Push even though verification failed or never ran.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
ConnectTimeoutOpt = Annotated[Optional[float], typer.Option(
    "--connect-timeout", metavar="SECONDS", show_default=False,
    help="Hub connection timeout (default: RNAERNIE_HUB_CONNECT_TIMEOUT, else 10).")]
ReadTimeoutOpt = Annotated[Optional[float], typer.Option(
    "--read-timeout", metavar="SECONDS", show_default=False,
    help="Longest wait for each part of a Hub answer (default: RNAERNIE_HUB_READ_TIMEOUT, else 30).")]
DeadlineOpt = Annotated[Optional[float], typer.Option(
    "--deadline", metavar="SECONDS", show_default=False,
    help="Give up when the Hub has not answered for this long, retries included "
         "(default: RNAERNIE_HUB_DEADLINE, else 60).")]

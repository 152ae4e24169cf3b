"""`rnaernie-push FOLDER ORG/NAME`: push an already converted folder to the Hub, without converting again.

Same checks and error handling as `rnaernie-convert --push-to-hub`. Progress goes to stderr, like
the converter's; stdout gets only the result: the "pushed ..." / "nothing to push ..." line, or the
dry-run report. An error is one line on stderr (exit code 2); Ctrl-C or SIGTERM end with one line
saying what the Hub now holds (exit code 130 / 143). Neither numpy nor the conversion stack is
imported, and huggingface_hub only when actually pushing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convert.cli import run_guarded
from convert.errors import EXIT_OK
from convert.options import HubOptions, with_hub_options
from rnaernie.console import DebugOpt, err, new_app, run_command_line

app = new_app()

FolderArg = Annotated[Path, typer.Argument(metavar="FOLDER", help="A folder written by rnaernie-convert.", show_default=False)]
RepoIdArg = Annotated[str, typer.Argument(metavar="ORG/NAME", help="The Hub model repository (created if missing).",
                                          show_default=False)]


@app.command()
@with_hub_options
def push(folder: FolderArg, repo_id: RepoIdArg, hub: HubOptions = HubOptions(), debug: DebugOpt = False) -> None:
    """Push a folder made by rnaernie-convert to the Hugging Face Hub.

    The folder must have passed verification (its verification.json), unless --allow-unverified.
    Exit codes: 0 pushed (or dry run), 2 refused or failed (nothing is claimed as pushed), 130 interrupted,
    143 terminated (SIGTERM).
    """

    def body() -> int:
        hub.push(folder, repo_id, say=err, done=lambda line: print(line, flush=True))
        return EXIT_OK

    run_guarded(debug, body)


def main() -> None:
    run_command_line(app)  # SIGTERM during a push: one line saying what the Hub holds, exit 143


if __name__ == "__main__":
    main()

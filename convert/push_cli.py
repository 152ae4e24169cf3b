"""`rnaernie-push FOLDER ORG/NAME`: push an already converted folder to the Hub, without converting again.

Same checks and error handling as `rnaernie-convert --push-to-hub`. Progress goes to stderr, like
the converter's; stdout gets only the result: the "pushed ..." / "nothing to push ..." line, or the
dry-run report. An error is one line on stderr (exit code 2; 130 after Ctrl-C). Neither numpy nor
the conversion stack is imported, and huggingface_hub only when actually pushing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convert.cli import run_guarded
from convert.errors import EXIT_OK
from convert.options import (AllowUnverifiedOpt, CommitMessageOpt, ConnectTimeoutOpt, DeadlineOpt, DebugOpt,
                             DryRunOpt, PrivateOpt, ReadTimeoutOpt, RevisionOpt, TokenOpt)
from rnaernie.cli.app import err, new_app

app = new_app()

FolderArg = Annotated[Path, typer.Argument(metavar="FOLDER", help="A folder written by rnaernie-convert.", show_default=False)]
RepoIdArg = Annotated[str, typer.Argument(metavar="ORG/NAME", help="The Hub model repository (created if missing).",
                                          show_default=False)]


@app.command()
def push(
    folder: FolderArg,
    repo_id: RepoIdArg,
    private: PrivateOpt = False,
    revision: RevisionOpt = None,
    commit_message: CommitMessageOpt = None,
    token: TokenOpt = None,
    dry_run: DryRunOpt = False,
    allow_unverified: AllowUnverifiedOpt = False,
    connect_timeout: ConnectTimeoutOpt = None,
    read_timeout: ReadTimeoutOpt = None,
    deadline: DeadlineOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Push a folder made by rnaernie-convert to the Hugging Face Hub.

    The folder must have passed verification (its verification.json), unless --allow-unverified.
    Exit codes: 0 pushed (or dry run), 2 refused or failed (nothing is claimed as pushed), 130 interrupted.
    """

    def body() -> int:
        from convert.hub import HubLimits, push_folder

        limits = HubLimits.resolve(connect_timeout, read_timeout, deadline)
        push_folder(folder, repo_id, private=private, revision=revision, commit_message=commit_message, token=token,
                    dry_run=dry_run, allow_unverified=allow_unverified, limits=limits, say=err,
                    done=lambda line: print(line, flush=True))
        return EXIT_OK

    run_guarded(debug, body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

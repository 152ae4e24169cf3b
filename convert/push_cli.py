"""`rnaernie-push FOLDER ORG/NAME`: push an already converted folder to the Hub, without converting again.

Same options and error handling as `rnaernie-convert --push-to-hub`. Progress and the result go to
stdout; an error is one line on stderr (exit code 2). huggingface_hub is imported only when pushing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convert.cli import run_guarded
from convert.options import (AllowUnverifiedOpt, CommitMessageOpt, DebugOpt, DryRunOpt, PrivateOpt, RevisionOpt,
                             TokenOpt)
from rnaernie.cli.app import new_app
from convert.errors import EXIT_OK

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
    debug: DebugOpt = False,
) -> None:
    """Push a folder made by rnaernie-convert to the Hugging Face Hub.

    The folder must have passed verification (its verification.json), unless --allow-unverified.
    Exit codes: 0 pushed (or dry run), 2 refused or failed (nothing is claimed as pushed).
    """

    def body() -> int:
        from convert.hub import push_folder

        push_folder(folder, repo_id, private=private, revision=revision, commit_message=commit_message, token=token,
                    dry_run=dry_run, allow_unverified=allow_unverified, say=lambda line: print(line, flush=True))
        return EXIT_OK

    run_guarded(debug, body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

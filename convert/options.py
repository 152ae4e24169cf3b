"""Argument and option types of `rnaernie-convert` and `rnaernie-push`, each declared once.

The Hub options both commands take are declared once, as `HubOptions`: a command that takes a
`hub: HubOptions` parameter and is decorated with `with_hub_options` shows them as nine options
(`--private` ... `--deadline`) and receives them as one `HubOptions`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Callable, Optional

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


@dataclass(frozen=True)
class HubOptions:
    """The options of a push, as given on the command line (None: not given)."""

    private: bool = False
    revision: Optional[str] = None
    commit_message: Optional[str] = None
    token: Optional[str] = None
    dry_run: bool = False
    allow_unverified: bool = False
    connect_timeout: Optional[float] = None
    read_timeout: Optional[float] = None
    deadline: Optional[float] = None

    def limits(self):
        """The push's `HubLimits` (raises `HubError` for a bad value, before anything is done)."""
        from convert.hub_transport import HubLimits

        return HubLimits.resolve(self.connect_timeout, self.read_timeout, self.deadline)

    def push(self, folder: Path, repo_id: str, say: Callable[[str], None], done: Callable[[str], None] | None = None):
        """`convert.hub.push_folder` with these options."""
        from convert.hub import push_folder

        return push_folder(folder, repo_id, private=self.private, revision=self.revision,
                           commit_message=self.commit_message, token=self.token, dry_run=self.dry_run,
                           allow_unverified=self.allow_unverified, limits=self.limits(), say=say, done=done)


_HUB_OPTION_TYPES = {"private": PrivateOpt, "revision": RevisionOpt, "commit_message": CommitMessageOpt,
                     "token": TokenOpt, "dry_run": DryRunOpt, "allow_unverified": AllowUnverifiedOpt,
                     "connect_timeout": ConnectTimeoutOpt, "read_timeout": ReadTimeoutOpt, "deadline": DeadlineOpt}


def with_hub_options(command: Callable) -> Callable:
    """Show `command`'s `hub: HubOptions` parameter to typer as the nine Hub options, in its place."""
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name != "hub":
            parameters.append(parameter)
            continue
        parameters += [inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=field.default,
                                         annotation=_HUB_OPTION_TYPES[field.name]) for field in fields(HubOptions)]

    @functools.wraps(command)
    def with_options(**given):
        hub = HubOptions(**{field.name: given.pop(field.name) for field in fields(HubOptions)})
        return command(**given, hub=hub)

    with_options.__signature__ = signature.replace(parameters=parameters)
    with_options.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return with_options

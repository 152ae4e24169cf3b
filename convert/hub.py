"""Publish a converted folder on the Hugging Face Hub: `push_folder`, used by both command lines.

This module is the push's policy and its messages: which folders may be pushed
(`check_publishable`), what the card says, what is reported. How requests are bounded in time
lives in `convert.hub_transport`, how a failure becomes one line in `convert.hub_errors`.

Only folders made by rnaernie-convert are pushed, and only verified ones unless the caller says
otherwise (the card then says the model is unverified). huggingface_hub is imported inside the
function, so conversion and `--dry-run` work without it. Every Hub failure becomes one `HubError`
line saying what happened and what to do; nothing is reported as pushed before the upload returns,
and an interruption (`PushInterrupted`) says what the remote repository now holds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple
from urllib.parse import quote

from convert.errors import HubError, MissingDependencyError, PushInterrupted
from convert.hub_transport import HubLimits, HubWatch, bounded_http, one_line, relayed_hub_log
from convert.records import CONVERSION_RECORD, changed_since_verification, read_conversion_record, read_verification
from rnaernie.errors import interruption

DEFAULT_ENDPOINT = "https://huggingface.co"
REQUIRED_FILES = (CONVERSION_RECORD, "model.safetensors")
INSTALL_HINT = "pip install 'rnaernie-convert[hub]'"
HIDDEN = [".*", "*/.*"]  # never pushed: .git, .cache, editor droppings (same rule as `folder_files`)
_REPO_ID = re.compile(r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?")


@dataclass
class PushResult:
    repo_id: str
    url: str                    # the repository page (the branch page with --revision)
    files: dict[str, int]       # path in the repository -> bytes
    verified: bool
    card: str                   # the README.md that was (or, in a dry run, would be) pushed
    revision: str | None = None
    dry_run: bool = False
    commit_oid: str | None = None
    changed: bool = True        # False: the Hub already had exactly these files, so no commit was made


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, dry_run: bool = False,
                allow_unverified: bool = False, limits: HubLimits | None = None,
                say: Callable[[str], None] = print, done: Callable[[str], None] | None = None) -> PushResult:
    """Push `folder` (an rnaernie-convert output) to the Hub model repository `repo_id`.

    Creates the repository (private if asked; otherwise the namespace's default) and the branch
    `revision` if missing. `limits` bound the waiting (default: `HubLimits.resolve()`, i.e. the
    RNAERNIE_HUB_* environment variables, else the defaults). Progress goes to `say`, the final
    line (result or dry-run report) to `done` (default: `say`). Raises `HubError` for refusals and
    Hub failures, `PushInterrupted` on Ctrl-C / SIGTERM during the push, and
    `MissingDependencyError` if huggingface_hub is not installed.
    """
    folder = Path(folder)
    done = done or say
    limits = limits or HubLimits.resolve()
    check_repo_id(repo_id)
    publishable = check_publishable(folder, allow_unverified)
    verified = publishable.problem is None
    card = _card(folder, publishable.record, publishable.verification, verified)
    message = commit_message or default_commit_message(publishable.record, verified)

    if dry_run:
        files = folder_files(folder)
        files["README.md"] = len(card.encode("utf-8"))
        url = repo_url(_endpoint(None), repo_id, revision)
        done(dry_run_report(url, files, card, message, private, verified, publishable.problem))
        return PushResult(repo_id, url, files, verified, card, revision, dry_run=True)

    hub = _import_hub()
    card = _through_card_classes(hub, card)
    endpoint = _endpoint(hub.constants)
    url = repo_url(endpoint, repo_id, revision)
    token = _resolve_token(token, hub)
    _write_card(folder, card)
    if not verified:
        say(f"warning: {folder} {publishable.problem}; pushing it anyway (--allow-unverified), README.md says it is "
            "unverified")
    files = folder_files(folder)
    say(f"pushing {len(files)} files ({_size(sum(files.values()))}) to {url}")
    watch = HubWatch(limits)
    with relayed_hub_log(say), bounded_http(hub, watch):
        head_before, commit = _upload(hub, endpoint, folder, repo_id, private=private, revision=revision,
                                      message=message, token=token, watch=watch, url=url)
    changed = commit.oid != head_before  # huggingface_hub returns the branch's head when it had nothing to send
    if changed:
        done(f"pushed {len(files)} files to {url} (commit {commit.oid[:12]})")
    else:
        done(f"nothing to push: {url} already has these {len(files)} files (commit {commit.oid[:12]})")
    return PushResult(repo_id, url, files, verified, card, revision, commit_oid=commit.oid, changed=changed)


class Publishable(NamedTuple):
    record: dict                # conversion.json
    verification: dict | None   # verification.json, if readable and with a verdict
    problem: str | None         # why the folder counts as unverified; None: it passed verification


def check_publishable(folder: Path, allow_unverified: bool) -> Publishable:
    """The push's gate: `folder` was made by rnaernie-convert, passed verification (its
    verification.json) and has not changed since (every file's sha256 as recorded), or the caller
    allows an unverified push. Raises `HubError` otherwise."""
    _check_folder(folder)
    record = read_conversion_record(folder)
    verification, problem = read_verification(folder)
    changed = changed_since_verification(folder, verification) if problem is None else None
    if changed:  # a pass vouches only for the bytes it was given: the card must not repeat it
        verification, problem = None, changed
    if problem is not None and not allow_unverified:
        verify = f"`rnaernie-convert CHECKPOINT {folder} --verify-only`"
        todo = (f"verify it as it is now with {verify}" if changed else
                f"fix the cause, then run {verify} again" if verification else f"run {verify} first")
        raise HubError(f"{folder} {problem}, so it will not be pushed: {todo}, or pass --allow-unverified to push "
                       "it with a card that says so.")
    return Publishable(record, verification, problem)


# ---------------------------------------------------------------------------------------- checks

def check_repo_id(repo_id: str) -> None:
    if not _REPO_ID.fullmatch(repo_id or "") or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        raise HubError(f"{repo_id!r} is not a Hub repository id; pass ORG/NAME (letters, digits, '-', '_', '.'), "
                       "e.g. my-lab/rnaernie.")


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder; pass the output folder of rnaernie-convert.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise HubError(f"{folder} has no {' or '.join(missing)}, so it was not made by rnaernie-convert and will "
                       "not be pushed; convert the checkpoint with rnaernie-convert first.")


def _card(folder: Path, record: dict, verification: dict | None, verified: bool) -> str:
    """The README.md to push: the folder's own card if verified (the verifier wrote it), else one saying so."""
    from convert.card import render_card

    readme = folder / "README.md"
    if verified and readme.is_file():
        return readme.read_text(encoding="utf-8")
    try:
        return render_card(record, verification)
    except (KeyError, TypeError, ValueError):  # a failed verdict with missing figures: say "not verified"
        return render_card(record, None)


def _through_card_classes(hub, card: str) -> str:
    """The card as huggingface_hub's ModelCard reads and renders it: what the Hub will see."""
    try:
        return hub.ModelCard(card).content
    except Exception as exc:  # noqa: BLE001 - YAML and validation errors have no common base
        raise HubError(f"README.md's metadata cannot be read by huggingface_hub ({one_line(exc, 160)}); "
                       "convert again to regenerate the card. Nothing was pushed.") from None


def _write_card(folder: Path, card: str) -> None:
    """Make the folder's README.md the card being pushed (replaced atomically: never half written)."""
    from convert.writer import replace_files

    readme = folder / "README.md"
    if not readme.is_file() or readme.read_text(encoding="utf-8") != card:
        replace_files(folder, {"README.md": card}, commit=False)


# ---------------------------------------------------------------------------------------- display

def folder_files(folder: Path) -> dict[str, int]:
    """The files a push sends: everything in the folder except hidden paths, with their sizes."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path.stat().st_size
    return files


def default_commit_message(record: dict, verified: bool) -> str:
    state = "parity verified" if verified else "UNVERIFIED"
    return f"RNAErnie {record['architecture']} converted by rnaernie-convert {record['tool_version']} ({state})"


def repo_url(endpoint: str, repo_id: str, revision: str | None) -> str:
    base = f"{endpoint}/{repo_id}"
    return base if revision in (None, "main") else f"{base}/tree/{quote(revision, safe='')}"


def dry_run_report(url: str, files: dict[str, int], card: str, message: str, private: bool, verified: bool,
                   problem: str | None) -> str:
    width = max(len(f"{size:,}") for size in files.values())
    lines = [f"dry run (nothing sent): would push {len(files)} files ({_size(sum(files.values()))}) to {url}"
             + (" as a private repository" if private else ""),
             *(f"  {size:>{width},} bytes  {name}" for name, size in files.items()),
             f"verification: {'passed' if verified else 'UNVERIFIED, the folder ' + problem + '; the card says so'}",
             f"commit message: {message}",
             "----- README.md -----",
             card.rstrip("\n")]
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------------------------------- the Hub

def _import_hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 - used as hub.constants
    except ImportError:
        raise MissingDependencyError(f"pushing to the Hub needs huggingface_hub: {INSTALL_HINT}") from None
    return huggingface_hub


def _endpoint(constants) -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it only once, at import), else the library's default."""
    return (os.environ.get("HF_ENDPOINT") or getattr(constants, "ENDPOINT", None) or DEFAULT_ENDPOINT).rstrip("/")


def _resolve_token(token: str | None, hub) -> str:
    """--token, else HF_TOKEN, else the cached `hf auth login` token."""
    try:
        token = token or os.environ.get("HF_TOKEN") or hub.get_token()
    except Exception as exc:  # noqa: BLE001 - e.g. an OIDC exchange configured but failing
        raise HubError(f"could not read the Hugging Face token ({one_line(exc)}); run `hf auth login` or pass "
                       "--token / set HF_TOKEN. Nothing was pushed.") from exc
    if not token:
        raise HubError("no Hugging Face token found: run `hf auth login`, or pass --token or set HF_TOKEN "
                       "(a token with write access). Nothing was pushed.")
    return token


def _upload(hub, endpoint: str, folder: Path, repo_id: str, *, private: bool, revision: str | None, message: str,
            token: str, watch: HubWatch, url: str):
    """create_repo -> create_branch -> upload_folder; return (the branch's head before, the commit).

    Any failure becomes one HubError line, an interruption one `PushInterrupted` line saying what
    the Hub now holds.
    """
    from convert.hub_errors import hub_failure  # imports huggingface_hub's and httpx2's error types

    doing = f"creating {repo_id}"
    try:
        api = hub.HfApi(endpoint=endpoint, token=token)
        # private=None (not False) when --private is absent: an organisation's "private by default" still applies.
        api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        if private and not api.repo_info(repo_id, repo_type="model").private:  # create_repo ignores it for old repos
            raise HubError(f"{repo_id} already exists and is public, so --private cannot apply. Nothing was pushed. "
                           "Make it private in its settings on the Hub, or choose another name.")
        if revision and revision != "main" and not revision.startswith("refs/"):
            doing = f"creating branch {revision!r} on {repo_id}"
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        doing = f"uploading to {repo_id}"
        head_before = api.repo_info(repo_id, repo_type="model", revision=revision).sha
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", revision=revision,
                                   commit_message=message, ignore_patterns=list(HIDDEN))
        return head_before, commit
    except HubError:
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated) where a handler raises it
        what, code = interruption(exc)
        raise PushInterrupted(f"{what} while {doing}; {remote_state(watch, repo_id, url)}", code) from None
    except Exception as exc:  # noqa: BLE001 - classified by type; --debug shows the original as the cause
        raise hub_failure(exc, doing=doing, endpoint=endpoint, repo_id=repo_id, revision=revision,
                          uploading=doing.startswith("uploading"), watch=watch) from exc


def remote_state(watch: HubWatch, repo_id: str, url: str) -> str:
    """What the Hub holds after an interruption, as far as this push knows."""
    if watch.committed:
        return f"the commit was applied: {url} has the files."
    if watch.commit_unanswered:
        return (f"the commit was sent but not answered, so it may or may not have been applied: check {url} "
                "and run the same command again (it pushes only what is missing).")
    created = f"{repo_id} was created, but " if watch.created else ""
    stored = (" (large files already sent to the Hub's storage are not in the repository, and will not be "
              "sent again)" if watch.storage_started else "")
    return (f"{created}no commit was made, so the repository's files are unchanged{stored}. Run the same "
            "command again to push.")

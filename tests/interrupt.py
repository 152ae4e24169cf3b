"""Run a console script with a signal sent at a named moment: `python -m tests.interrupt POINT:SIGNAL MODULE ARGS...`.

The production code has no test hook: this wrapper patches the function that marks the moment, so
that the process sends itself the signal there (handled before `os.kill` returns, so it lands exactly
there, with no timing involved), then runs MODULE as `python -m MODULE ARGS...` would. The moments:

- start, done: before / after `convert.pipeline.convert_and_verify` (the whole run);
- staged, written: before / after `convert.pipeline.write_folder` (the staging folder exists / is complete);
- writing: while model.safetensors is written (the second tensor is asked for);
- verifying: both sides of the verification have run (after `run_transformers`);
- verified: the verification is over, the folder not yet committed (after `convert.verify.run.verify`);
- swap: `--force`: the old OUT_DIR has been moved aside, the new one not yet renamed into place;
- published: the staging folder has been renamed to OUT_DIR;
- cleaned: the old OUT_DIR moved aside has been deleted;
- committed: a push's upload has returned (after `huggingface_hub.HfApi.upload_folder`).
"""

from __future__ import annotations

import functools
import os
import pathlib
import runpy
import shutil
import signal
import sys


def _wrap(owner, name: str, *, before: bool = False, when=lambda *args, **kwargs: True) -> None:
    """Send the signal before or after `owner.name` runs, on the calls where `when(*args, **kwargs)` holds."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def patched(*args, **kwargs):
        fire = when(*args, **kwargs)
        if before and fire:
            _send()
        result = original(*args, **kwargs)
        if not before and fire:
            _send()
        return result

    setattr(owner, name, patched)


def _nth_call(n: int):
    calls = []

    def when(*args, **kwargs) -> bool:
        calls.append(None)
        return len(calls) == n
    return when


def _named(part: str, path_of=lambda self, *rest: self):
    return lambda *args, **kwargs: part in pathlib.Path(path_of(*args)).name


def _install(point: str) -> None:
    import convert.pipeline as pipeline

    if point in ("start", "done"):
        _wrap(pipeline, "convert_and_verify", before=point == "start")
    elif point in ("staged", "written"):
        _wrap(pipeline, "write_folder", before=point == "staged")
    elif point == "writing":
        _wrap(pipeline, "mapped_tensor", before=True, when=_nth_call(2))
    elif point == "verifying":
        import convert.verify.run as run

        _wrap(run, "run_transformers")
    elif point == "verified":
        import convert.verify.run as run

        _wrap(run, "verify")
    elif point == "swap":  # the old folder renamed into its trash folder
        _wrap(pathlib.Path, "rename", when=_named(".old-", lambda self, target: pathlib.Path(target).parent))
    elif point == "published":  # the staging folder renamed to OUT_DIR (os.replace when OUT_DIR is new or empty)
        _wrap(pathlib.Path, "rename", when=_named(".partial-"))
        _wrap(os, "replace", when=_named(".partial-", lambda source, target: source))
    elif point == "cleaned":
        _wrap(shutil, "rmtree", when=_named(".old-"))
    elif point == "committed":
        import huggingface_hub

        _wrap(huggingface_hub.HfApi, "upload_folder")
    else:
        raise SystemExit(f"tests.interrupt: unknown point {point!r}")


_SIGNAL = signal.SIGINT


def _send() -> None:
    os.kill(os.getpid(), _SIGNAL)


def main() -> None:
    global _SIGNAL
    point, _, name = sys.argv[1].partition(":")
    _SIGNAL = signal.Signals[name]
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    _install(point)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""The one signal rule (`rnaernie.signals`): SIGTERM stops a run as Ctrl-C does, unless the program
handles SIGTERM itself; every console script installs it.

Signals are sent by the test process to itself: Python runs the handler before `os.kill` returns,
so each case is exact, with no timing involved.
"""

from __future__ import annotations

import os
import signal

import pytest

from convert.writer import staged_output
from rnaernie.errors import Terminated
from rnaernie.output import atomic_output
from rnaernie.signals import raise_terminated, sigterm_raises


@pytest.fixture
def default_sigterm():
    """SIGTERM as a fresh process has it (pytest's own handler, if any, comes back afterwards)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def host_handler():
    """A host program's own SIGTERM handler (a notebook kernel, a web server, a workflow engine)."""
    received: list[int] = []
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = signal.signal(signal.SIGTERM, handler)
    yield handler, received
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_raises_terminated_inside_and_the_default_comes_back(default_sigterm):
    with pytest.raises(Terminated):
        with sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) is raise_terminated
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def sigterm_to_the_host() -> None:
    """SIGTERM now; the host's handler must get it (a `Terminated` would mean it was replaced)."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except Terminated:
        pytest.fail("SIGTERM raised Terminated: the host program's own handler was replaced")


def test_a_host_programs_handler_is_kept_by_the_model_sides_file_writing(host_handler, tmp_path):
    handler, received = host_handler
    out = tmp_path / "labels.json"
    with atomic_output(out) as temporary:
        temporary.write_text("[]\n")
        sigterm_to_the_host()  # the host decides what SIGTERM means: here, it only records it
    assert received == [signal.SIGTERM] and out.read_text() == "[]\n"
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_host_programs_handler_is_kept_by_the_converters_staged_output(host_handler, tmp_path):
    handler, received = host_handler
    with staged_output(tmp_path / "out", force=False) as staging:
        (staging / "config.json").write_text("{}\n")
        sigterm_to_the_host()
    assert received == [signal.SIGTERM] and (tmp_path / "out" / "config.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.parametrize("script", ["convert.cli", "convert.push_cli", "rnaernie.cli"])
def test_every_console_script_makes_sigterm_raise_for_its_whole_run(script, default_sigterm, monkeypatch):
    import importlib

    import typer

    from rnaernie import signals

    monkeypatch.setattr(signals, "_command_line_process", False)  # restored after: convert.cli.main sets it
    seen = []
    monkeypatch.setattr(typer.Typer, "__call__", lambda app, *a, **k: seen.append(signal.getsignal(signal.SIGTERM)))
    importlib.import_module(script).main()  # the function pyproject.toml's [project.scripts] names
    assert seen == [raise_terminated]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def signal_at(monkeypatch, module, name: str, when=lambda *a, **k: True) -> None:
    """Make `module.name(...)` send this process SIGINT first (when `when(...)` holds): an exact moment."""
    real = getattr(module, name)

    def interrupted(*args, **kwargs):
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, interrupted)


def old_and_new_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old\n")
    return out


# The moments inside the publication of a folder that replaces another: the old folder just made a
# trash folder ("swap"), and the trash being deleted ("cleaned").
MOMENTS = {"swap": ("tempfile", "mkdtemp", lambda *a, prefix="", **k: ".old-" in prefix),
           "cleaned": ("shutil", "rmtree", lambda *a, **k: True)}


@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_while_a_folder_is_published_comes_after_it_is_complete(moment, tmp_path, monkeypatch):
    import importlib

    from rnaernie.output import atomic_folder

    module, name, when = MOMENTS[moment]
    out = old_and_new_folder(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(out, replace=True) as staging:
            (staging / "new.txt").write_text("new\n")
            signal_at(monkeypatch, importlib.import_module(module), name, when)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["new.txt"]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_command_line_run_that_ends_at_its_commit_completes_it_and_absorbs_the_signal(moment, tmp_path,
                                                                                        monkeypatch):
    import importlib

    from rnaernie import signals
    from rnaernie.output import atomic_folder

    module, name, when = MOMENTS[moment]
    handlers = {signum: signal.getsignal(signum) for signum in signals.INTERRUPTIONS}
    monkeypatch.setattr(signals, "_command_line_process", True)
    monkeypatch.setattr(signals, "_run_ends_at_commit", True)
    out = old_and_new_folder(tmp_path)
    try:
        with atomic_folder(out, replace=True) as staging:
            (staging / "new.txt").write_text("new\n")
            signal_at(monkeypatch, importlib.import_module(module), name, when)
    except KeyboardInterrupt:
        pytest.fail("the signal stopped a command-line run whose output was already complete")
    finally:
        for signum, handler in handlers.items():  # the recorder stays, as it would until the process exits
            signal.signal(signum, handler)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["new.txt"]

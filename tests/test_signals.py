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

    from convert import interruptions

    monkeypatch.setattr(interruptions, "_command_line_process", False)  # restored after: convert.cli.main sets it
    seen = []
    monkeypatch.setattr(typer.Typer, "__call__", lambda app, *a, **k: seen.append(signal.getsignal(signal.SIGTERM)))
    importlib.import_module(script).main()  # the function pyproject.toml's [project.scripts] names
    assert seen == [raise_terminated]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

"""The verifier's Paddle side is started before the checkpoint is read (the default command starts it
before converting): it builds the kind the conversion decided, and a run that stops early must leave no
Paddle process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_MLM, require

require("paddle")


@pytest.mark.parametrize("fixture,labels", [("tiny-seqcls-13", 13), ("tiny-tokcls-5", 5)])
def test_a_side_started_before_the_checkpoint_is_read_builds_the_conversions_kind(tmp_path: Path, fixture: str,
                                                                                  labels: int):
    """The side is spawned first (it imports Paddle), then told the conversion's checkpoint, config and kind: the
    two classifiers share their tensor names, so only the kind the conversion decided gives these logits."""
    from convert.conversion import conversion_of_folder
    from convert.pipeline import convert_checkpoint
    from convert.verify.paddle_side import PaddleSide
    from convert.verify.prepare import builtin_probes, prepare

    checkpoint = ROOT / "fixtures" / fixture / "model_state.pdparams"
    folder = tmp_path / "out"
    side = PaddleSide()
    try:
        convert_checkpoint(checkpoint, folder)
        conversion = conversion_of_folder(checkpoint, folder)
        side.build(conversion)
        setup = prepare(conversion, folder, probes=builtin_probes(), atol=None)
        side.submit(setup)
        outputs = side.result()
    finally:
        side.stop()
    per_token = conversion.head.logits.per_position
    for batch, probes in zip(outputs.batches, setup.batches, strict=True):
        assert batch.logits.shape == (probes.ids.shape + (labels,) if per_token else (len(probes.ids), labels))


MARKER = "RNAERNIE_TEST_RUN"  # set in a run's environment, which its child processes inherit


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment has MARKER=`marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"{MARKER}={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue  # ended meanwhile, or not ours
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize("point,sig", [("staged", "SIGINT"), ("writing", "SIGTERM"), ("written", "SIGINT")])
def test_a_conversion_stopped_early_leaves_no_paddle_process(tmp_path: Path, point: str, sig: str):
    """Stopped while the folder is being written (the Paddle side is building meanwhile): the run
    reports the interruption and its Paddle process is gone when it exits."""
    marker = uuid.uuid4().hex  # unique: other test sessions may run on this machine
    env = {**os.environ, "PYTHONPATH": str(ROOT), MARKER: marker}
    run = subprocess.run([sys.executable, "-m", "tests.interrupt", f"{point}:{sig}", "convert.cli",
                          str(TINY_MLM["2.4"]), str(tmp_path / "out"), "-q"],
                         capture_output=True, text=True, timeout=600, env=env,
                         preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)])
    assert run.returncode == {"SIGINT": 130, "SIGTERM": 143}[sig], run.stderr
    assert not (tmp_path / "out").exists()
    assert processes_with(marker) == []


def test_bad_input_stops_the_paddle_side_too(tmp_path: Path):
    marker = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), MARKER: marker}
    run = subprocess.run([sys.executable, "-m", "convert.cli", str(TINY_MLM["2.4"]), str(tmp_path / "out"),
                          "--dtype", "float64"], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert processes_with(marker) == []

"""The verifier's Paddle side is started before the folder exists (the default command starts it
before converting): it must give the same outputs as one started for the folder, whatever kind it
foresaw, and a run that stops early must leave no Paddle process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_MLM, require

require("paddle")


def paddle_outputs(checkpoint: Path, folder: Path, started_as: str | None):
    """The Paddle side's outputs for `folder`, from a side started to build `started_as` (None: the folder's kind)."""
    from convert.verify.paddle_side import PaddleSide
    from convert.verify.prepare import prepare
    from convert.verify.probes import builtin_probes

    setup = prepare(checkpoint, folder, config=None, probes=builtin_probes(), atol=None)
    side = PaddleSide(checkpoint, None, started_as or setup.detection.head.name)
    try:
        side.submit(setup)
        return side.result()
    finally:
        side.stop()


def assert_same_outputs(got, want) -> None:
    assert len(got.batches) == len(want.batches) and set(got.extra) == set(want.extra)
    for got_batch, want_batch in zip(got.batches, want.batches):
        for name in ("logits", "pooled"):
            np.testing.assert_array_equal(getattr(got_batch, name), getattr(want_batch, name))
        for got_layer, want_layer in zip(got_batch.hidden_states, want_batch.hidden_states, strict=True):
            np.testing.assert_array_equal(got_layer, want_layer)
    for name, arrays in want.extra.items():
        for got_array, want_array in zip(got.extra[name], arrays, strict=True):
            np.testing.assert_array_equal(got_array, want_array)


@pytest.mark.parametrize("fixture,started_as", [
    ("tiny-seqcls-13", "token-classifier"),  # built as another kind (same tensors), then as the folder's
    ("tiny-mlm-2.4", "encoder"),  # a kind the checkpoint contradicts: the early build fails, the job's runs
])
def test_a_side_started_for_another_kind_runs_the_folders_kind(tmp_path: Path, fixture: str, started_as: str):
    from convert.pipeline import convert_checkpoint

    checkpoint = ROOT / "fixtures" / fixture / "model_state.pdparams"
    folder = tmp_path / "out"
    convert_checkpoint(checkpoint, folder)
    foreseen = paddle_outputs(checkpoint, folder, None)
    assert foreseen.batches[0].logits is not None  # the kind's logits are compared
    assert_same_outputs(paddle_outputs(checkpoint, folder, started_as), foreseen)


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
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RNAERNIE_CONVERT_TEST_SIGNAL_AT": f"{point}:{sig}",
           MARKER: marker}
    run = subprocess.run([sys.executable, "-m", "convert.cli", str(TINY_MLM["2.4"]), str(tmp_path / "out"), "-q"],
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

"""The Paddle side: the original network on the probes, in a child process of its own (`PaddleSide`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConversionError
from convert.paddle_config import ErnieConfig
from convert.kinds import PaddleModel
from convert.verify.prepare import BatchOutputs, Outputs, Setup

@dataclass(frozen=True)
class PaddleStart:
    """What building the original network needs, from the `Conversion` (small and picklable)."""

    checkpoint: Path
    config: ErnieConfig
    head: str  # the kind (a `convert.kinds.Kind` value)
    backbone: Path | None  # the pre-trained checkpoint feeding a kind without an encoder (`convert.kinds.Backbone`)


@dataclass(frozen=True)
class PaddleJob:
    """What the Paddle side runs, once the folder and its probes are known; small and picklable."""

    batches: list[np.ndarray]  # converted-vocabulary ids of each probe batch
    kept: np.ndarray  # source id of each converted-vocabulary id
    check_inputs: dict[str, Any]  # the kind's own checks: name -> inputs (None: not for this folder)


def build_network(start: PaddleStart) -> PaddleModel:
    """Read the checkpoint through the safe reader (in this process: its own mapping of the file, from the
    page cache) and build the original network of the conversion's kind."""
    from convert.heads import detect_head, head_of
    from convert.mapping import as_float32
    from convert.paddle_reference import build_reference
    from convert.pdparams import load_pdparams

    source = load_pdparams(start.checkpoint)
    if start.backbone is not None:  # the same one table as the conversion's
        source = head_of(start.head).backbone.read(source, load_pdparams(start.backbone), str(start.backbone))
    tensors = {key: as_float32(array) for key, array in source.tensors.items()}
    detection = detect_head(set(tensors), start.config.architecture, start.head, str(start.checkpoint))
    # each weight's pages leave memory once Paddle holds its copy
    ernie, top = build_reference(tensors, start.config, detection, source.release)
    return PaddleModel(ernie, top, tensors, start.config, detection)


def run_paddle(model: PaddleModel, job: PaddleJob, built_in: float) -> Outputs:
    """The original network on the probe batches (source vocabulary ids; logits back in kept columns)."""
    from convert.paddle_reference import run_reference

    ernie, top, head = model.encoder, model.head, model.detection.head
    out = Outputs(seconds={"build_paddle": built_in})
    clock = time.perf_counter()
    for ids in job.batches:
        ref = run_reference(ernie, top, job.kept[ids])
        logits = head.logits.kept_columns(ref.logits, job.kept) if head.logits else None
        out.batches.append(BatchOutputs(ref.hidden_states, ref.pooled, logits))
    for check in head.checks:
        if job.check_inputs[check.name] is not None:
            started = time.perf_counter()
            out.extra.update(check.run_paddle(job.check_inputs[check.name], model))
            out.seconds[f"run_paddle: {check.name} check"] = time.perf_counter() - started
    out.seconds["run_paddle"] = time.perf_counter() - clock
    return out


def _paddle_child(threads: int, connection) -> None:
    """Entry point of the child process: import Paddle, build the network, wait for the job, send back the
    outputs (or the exception)."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)  # read when Paddle loads, which it has not yet
    try:
        import convert.paddle_reference  # noqa: F401 - Paddle, quietly, while the main process reads the checkpoint

        start, clock = connection.recv(), time.perf_counter()
        network = build_network(start)
        outputs = run_paddle(network, connection.recv(), time.perf_counter() - clock)
        del network  # freed before the outputs are sent: the send is the moment both processes hold them
        _send(connection, ("ok", outputs))
    except EOFError:
        pass  # the parent gave up before sending the job
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        _send(connection, ("error", exc))
    finally:
        connection.close()


def _send(connection, message) -> None:
    """Pickle `message` with its arrays' data out of band, sent straight from the arrays: no pickled
    copy of the outputs is made here, and the receiver reads them into their final buffers."""
    import pickle

    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    connection.send([buffer.raw().nbytes for buffer in buffers])
    connection.send_bytes(header)
    for buffer in buffers:
        connection.send_bytes(buffer.raw())


def _receive(connection):
    import pickle

    sizes = connection.recv()
    header = connection.recv_bytes()
    buffers = [bytearray(size) for size in sizes]  # writable, as arrays unpickled in band would be
    for buffer in buffers:
        connection.recv_bytes_into(buffer)
    return pickle.loads(header, buffers=buffers)


def _cores() -> int:
    """The CPU cores this process may use (Paddle's thread count)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class PaddleSide:
    """The Paddle side in a child process, started first: it imports Paddle while this process reads the
    checkpoint, builds the network `build(conversion)` names while the folder is written, and runs the
    job (`submit(setup)`) on every core while this process imports torch; `result()` waits for it. The two
    frameworks never share a process, and the two full-size models are never in memory at once (running
    both sides together was faster but peaked at 1.5 GiB, their thread pools busy-waiting against each
    other). The child is killed if this process gives up."""

    def __init__(self):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state is inherited
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_paddle_child, daemon=True, args=(_cores(), child_end))
        self._process.start()
        child_end.close()

    def build(self, conversion) -> None:
        """Say which network to build: the `convert.conversion.Conversion`'s checkpoint, config and kind."""
        self._send(PaddleStart(conversion.checkpoint, conversion.paddle_config, conversion.head.name,
                               conversion.backbone))

    def submit(self, setup: Setup) -> None:
        """Send the job: the probes in ids."""
        kept = np.asarray(setup.conversion.vocabulary.kept_source_ids)
        self._send(PaddleJob([batch.ids for batch in setup.batches], kept, setup.check_inputs))

    def _send(self, message) -> None:
        try:
            self._connection.send(message)
        except OSError:
            pass  # the child has stopped already; `result()` says why

    def result(self) -> Outputs:
        try:
            status, payload = _receive(self._connection)
        except EOFError:
            self._process.join()
            raise ConversionError(f"the Paddle side of the verification stopped (exit code {self._process.exitcode}); "
                                  "run again with --debug, or check that paddlepaddle imports.") from None
        finally:
            self.stop()
        if status == "error":
            raise payload
        return payload

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()

"""`verify_conversion`: both sides on the same probes, every check, the verdict written with the card."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from convert import __version__
from convert.conversion import Conversion
from convert.errors import ConversionError, MissingDependencyError, ParityError, describe
from convert.records import CARD, FILES_KEY, VERIFICATION_RECORD, folder_digests
from convert.verify.paddle_side import PaddleSide
from convert.verify.prepare import Outputs, builtin_probes, prepare, read_probe_file
from convert.verify.scoring import layer_rows, masked_argmax_agreement, score, summary_table, unfinished_verdict, verdict
from convert.verify.static import float32_mapping, static_checks
from convert.verify.torch_side import TorchRuns, run_transformers
from convert.writer import json_text, replace_files, write_json

INSTALL_HINT = "pip install 'rnaernie-convert[verify]' (Paddle, torch, transformers) or pass --no-verify"


def require_verify_dependencies() -> None:
    missing = [name for name in ("paddle", "torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"verification needs {', '.join(missing)}, not installed: {INSTALL_HINT}.")


def compare(conversion: Conversion, out_dir: Path, *, probes: list[str], atol: float | None,
            say: Callable[[str], None], shown_as: Path | None = None, paddle_side: PaddleSide | None = None) -> dict:
    """Run both models on `probes` (the same ids, by the official tokenization rules); return the record.

    A folder that disagrees with the checkpoint gets a failed verdict naming what differs, never a crash:
    when a static check has failed, whatever goes wrong in running the folder is said in the parity check.
    `paddle_side`: one the caller started early and told to build; otherwise one is started here.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    if paddle_side is None:
        paddle_side = PaddleSide()
        paddle_side.build(conversion)
    setup = prepare(conversion, Path(out_dir), probes=probes, atol=atol)
    say(f"verifying {shown_as or out_dir} against {conversion.checkpoint} on {len(probes)} sequences")
    with ThreadPoolExecutor(max_workers=1) as hashing:
        digests = hashing.submit(folder_digests, setup.out_dir)  # the bytes this verdict vouches for
        paddle_side.submit(setup)
        try:
            import torch  # noqa: F401 - its import overlaps the Paddle side; the model waits until it is done

            reference = paddle_side.result()
        finally:
            paddle_side.stop()
        mapping = float32_mapping(setup)
        static = static_checks(setup, mapping)
        runs, layers, stored_layers, not_run_because = TorchRuns(Outputs(), None, []), [], None, None
        try:
            runs = run_transformers(setup, mapping)
            layers = score(setup, reference, runs.of_float32_mapping)
            stored_layers = None if runs.float32 is None else score(setup, reference, runs.stored, every_extra=False)
        except Exception as exc:  # e.g. sizes in config.json that do not fit the weights: the checks say why
            if not static:
                raise
            not_run_because = f"{type(exc).__name__}: {exc}".splitlines()[0]
            say(f"transformers cannot run {shown_as or out_dir} ({not_run_because})")
            layers, stored_layers = [], None
        files = digests.result()
    import torch
    import transformers

    lengths = [len(e) - 2 for e in setup.encoded]
    logits = [layer for layer in layers if layer.name == "logits"]
    verification = {
        **verdict(setup, static, runs.tokenizer_mismatches, layers, stored_layers, not_run_because),
        "dtype": conversion.dtype,
        "max_abs_logit_diff": logits[0].max_abs if logits else None,
        "layers": layer_rows(layers),
        "probe": {"sequences": len(probes), "min_length": min(lengths), "max_length": max(lengths),
                  "tokens": int(sum(len(e) for e in setup.encoded))},
        "source": {"file": conversion.checkpoint.name, "sha256": conversion.sha256,
                   "converted_from_sha256": conversion.record["source"].get("sha256")},
        FILES_KEY: files,
        "tool_version": __version__,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "paddle": importlib.metadata.version("paddlepaddle"),
                     "torch": torch.__version__, "transformers": transformers.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {phase: round(seconds, 2) for phase, seconds in {**reference.seconds, **runs.stored.seconds}.items()},
    }
    agreement = masked_argmax_agreement(setup, reference, runs.of_float32_mapping) if layers else None
    if agreement is not None:
        verification["masked_argmax_agreement"] = agreement
    if runs.stored.widget is not None:
        verification["widget"] = runs.stored.widget
    return verification


def verify(conversion: Conversion, out_dir: Path, *, probe: str | Path | None = None, atol: float | None = None,
           report: str | Path | None = None, say: Callable[[str], None] = print, staged_for: Path | None = None,
           paddle_side: PaddleSide | None = None) -> dict:
    """Check `out_dir` against `conversion`; save the verdict in it (and in `report`) with the card, both or neither.

    `staged_for`: `out_dir` is a staging folder that will become this OUT_DIR (messages name OUT_DIR, and
    writing the verdict is not yet the run's commit). `paddle_side`: one the caller started early.
    Returns the record when parity holds; raises `ParityError` (carrying it) when not, `ConversionError`
    for bad input.
    """
    shown_as = staged_for or out_dir
    probes = builtin_probes() + (read_probe_file(Path(probe)) if probe else [])
    try:
        verification = compare(conversion, out_dir, probes=probes, atol=atol, say=say, shown_as=shown_as,
                               paddle_side=paddle_side)
    except Exception as exc:  # an old verdict never outlives a verification that could not finish
        _withdraw(out_dir, exc, conversion.record, staged_for is None)
        raise
    source = verification["source"]
    if source["converted_from_sha256"] and source["sha256"] != source["converted_from_sha256"]:
        say(f"note: {conversion.checkpoint} is not the file {shown_as} was converted from (its sha256 differs)")
    if report:
        write_json(Path(report), verification)
    _replace_verdict(out_dir, verification, conversion.record, staged_for is None)
    say(summary_table(verification))
    if verification["verdict"] != "pass":
        raise ParityError(f"verification failed: {verification['failure']}. The figures are in "
                          f"{shown_as / VERIFICATION_RECORD}. Do not publish this folder.", verification)
    say(f"verification OK: {verification['checks']['structure']['tensors']} tensors bit-exact, config.json as "
        f"derived, tokenizer as the official rules, every output within atol {verification['atol']:g} "
        f"({verification['seconds']:.1f} s)")
    return verification


def verify_conversion(checkpoint: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                      probe: str | Path | None = None, atol: float | None = None, report: str | Path | None = None,
                      say: Callable[[str], None] = print, backbone: str | Path | None = None) -> dict:
    """Check an existing folder against `checkpoint` (`--verify-only`; `backbone` for a model converted with one):
    its `Conversion` is built from the folder's conversion.json and the checkpoint
    (`convert.conversion.conversion_of_folder`), then `verify` runs."""
    from convert.conversion import conversion_of_folder

    require_verify_dependencies()
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ConversionError(f"{out_dir} is not a folder; convert the checkpoint first (without --verify-only).")
    paddle_side = PaddleSide()  # imports Paddle while the checkpoint is read
    try:
        try:
            conversion = conversion_of_folder(checkpoint, out_dir, config, backbone)
        except Exception as exc:
            _withdraw(out_dir, exc, None, commit=True)
            raise
        paddle_side.build(conversion)
        return verify(conversion, out_dir, probe=probe, atol=atol, report=report, say=say, paddle_side=paddle_side)
    finally:
        paddle_side.stop()


def _withdraw(out_dir: Path, exc: Exception, record: dict | None, commit: bool) -> None:
    """Replace the folder's verdict with one saying why the verification could not finish."""
    try:
        _replace_verdict(out_dir, unfinished_verdict(describe(exc)[0]), record, commit)
    except OSError:
        pass  # an unwritable folder: the error that stopped the verification is the one to report


def _replace_verdict(out_dir: Path, verification: dict, record: dict | None, commit: bool) -> None:
    """Write the verdict and the card it goes into, together (the card only when the record is known)."""
    from convert.card import render_card

    files = {VERIFICATION_RECORD: json_text(verification)}
    if record is not None:
        files[CARD] = render_card(record, verification)
    replace_files(out_dir, files, commit=commit)

"""`rnaernie interact MODEL PAIRS -o OUT`: miRNA-target interaction scores, streamed from a pairs file to OUT."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterator

import typer

from rnaernie.cli.app import Progress, app, count
from rnaernie.cli.options import DeviceOpt, DtypeOpt, ModelArg, OutPathOpt, QuietOpt, ShardOpt
from rnaernie.console import DebugOpt, err, run_guarded
from rnaernie.errors import InputError
from rnaernie.interaction import DEFAULT_BATCH_SIZE

PairsArg = Annotated[str, typer.Argument(
    metavar="PAIRS", show_default=False,
    help="CSV or TSV with columns a_name,a_seq,b_name,b_seq (label optional); '-' reads stdin.")]
ThresholdOpt = Annotated[float, typer.Option(
    "--threshold", metavar="P", help="prediction is 1 when the probability of class 1 is above P.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", metavar="N", help="Pairs per forward pass.")]

SUFFIXES = (".csv", ".parquet", ".json")
FIELDS = ("a_name", "b_name", "probability", "prediction", "logit_0", "logit_1")
_PARQUET_ROWS = 65536  # rows buffered per Parquet row group


@app.command(no_args_is_help=True)
def interact(model: ModelArg, pairs: PairsArg, output: OutPathOpt, threshold: ThresholdOpt = 0.5,
             batch_size: BatchSizeOpt = DEFAULT_BATCH_SIZE, device: DeviceOpt = "auto",
             dtype: DtypeOpt = "float32", shard: ShardOpt = None, quiet: QuietOpt = False,
             debug: DebugOpt = False) -> None:
    """Score the (miRNA, target) pairs of PAIRS with an interaction MODEL and write OUT (.csv, .parquet, .json).

    Each row: a_name, b_name, probability (softmax probability of class 1, "interacts"), prediction,
    logit_0, logit_1, in input order (with --shard, a leading index column: the pair's position in
    the whole input). When PAIRS has a label column, the official metrics are printed.
    """
    run_guarded(debug, lambda: run_interact(model, pairs, output, threshold=threshold, batch_size=batch_size,
                                            device=device, dtype=dtype, shard=shard, quiet=quiet))


def run_interact(model: str, source: str, output: Path, *, threshold: float, batch_size: int, device: str,
                 dtype: str, shard: str | None, quiet: bool) -> int:
    import numpy as np

    from rnaernie.interaction import InteractionModel, binary_metrics, probability, read_pairs
    from rnaernie.output import atomic_output, check_output_path, require_pyarrow
    from rnaernie.sequences import Shard, opened

    # Everything the user can get wrong cheaply is checked before the model loads.
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold {threshold} is not a probability; give a value between 0 and 1.")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1.")
    suffix = check_output_path(output, SUFFIXES)
    if suffix == ".parquet":
        require_pyarrow(instead=".csv")
    part = Shard.parse(shard)
    pairs = opened(read_pairs(source))

    scorer = InteractionModel.from_pretrained(model, device=device, dtype=dtype)
    started = time.perf_counter()
    labels, predictions, logit_1 = [], [], []
    written = positive = 0
    fields = (("index",) if shard else ()) + FIELDS
    with (Progress(quiet, "scoring", " pairs") as progress, atomic_output(output) as temporary,
          _writer(temporary, suffix, fields) as write):
        for written, (pair, logits) in enumerate(scorer.iter_logits(part.select(pairs), batch_size), start=1):
            p = float(probability(logits))
            prediction = int(p > threshold)
            row = {"a_name": pair.a_name, "b_name": pair.b_name, "probability": p, "prediction": prediction,
                   "logit_0": float(logits[0]), "logit_1": float(logits[1])}
            if shard:
                row = {"index": part.index(written - 1), **row}
            write(row)
            positive += prediction
            if pair.label is not None:
                labels.append(pair.label)
                predictions.append(prediction)
                logit_1.append(logits[1])
            progress.step()
    if not quiet:
        where = f" (shard {shard})" if shard else ""
        err(f"scored {count(written, 'pair')}{where} into {output} in {time.perf_counter() - started:.1f} s: "
            f"{count(positive, 'pair')} predicted to interact (probability above {threshold:g}).")
        if labels:
            scores = binary_metrics(np.array(labels), np.array(predictions), np.array(logit_1))
            of = "" if len(labels) == written else f" ({count(len(labels), 'labelled pair')} of {written})"
            err(f"metrics{of}: accuracy {scores['accuracy']:.4f}, precision {scores['precision']:.4f}, recall "
                f"{scores['recall']:.4f}, F1 {scores['f1']:.4f}, AUC {scores['auc']:.4f} (as the official code: "
                "precision, recall and F1 averaged over both classes, AUC ranking by logit 1).")
    return 0


@contextmanager
def _writer(path: Path, suffix: str, fields: tuple[str, ...]) -> Iterator[Callable[[dict], None]]:
    """`with _writer(path, suffix, fields) as write: write(row)`: rows streamed to CSV, JSON or Parquet."""
    if suffix == ".json":
        from rnaernie.output import JsonList

        with JsonList(path) as rows:
            yield rows.write
    elif suffix == ".csv":
        import csv

        with open(path, "w", encoding="utf-8", newline="") as handle:
            rows = csv.writer(handle, lineterminator="\n")
            rows.writerow(fields)
            yield lambda row: rows.writerow([_cell(row[field]) for field in fields])
    else:
        import pyarrow as pa

        from rnaernie.embedding_files import ParquetWriter

        types = {"index": pa.int64(), "a_name": pa.string(), "b_name": pa.string(), "probability": pa.float64(),
                 "prediction": pa.int8(), "logit_0": pa.float32(), "logit_1": pa.float32()}
        schema = pa.schema([(field, types[field]) for field in fields])
        rows = ParquetWriter(path, schema, lambda buffered: pa.Table.from_pylist([r for r, in buffered], schema=schema),
                             size=lambda row: 1, group_values=_PARQUET_ROWS)
        try:
            yield rows.add
            rows.flush()
        finally:
            rows.close()


def _cell(value) -> str:
    """Floats with 9 significant digits (a float32 logit reads back exactly); the rest as written."""
    return f"{value:.9g}" if isinstance(value, float) else str(value)

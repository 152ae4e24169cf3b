"""`rnaernie interact MODEL PAIRS -o OUT`: miRNA-target interaction scores, streamed from a pairs file to OUT."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rnaernie.cli.app import app, count, progress_bar
from rnaernie.cli.options import DeviceOpt, DtypeOpt, ModelArg, OutPathOpt, QuietOpt, ShardOpt
from rnaernie.console import DebugOpt, err, run_guarded
from rnaernie.errors import InputError, OutputError
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
    import itertools

    import numpy as np

    from rnaernie.embedding import parse_shard, select_shard
    from rnaernie.interaction import InteractionModel, binary_metrics, probability, read_pairs
    from rnaernie.output import atomic_output, check_output_path

    # Everything the user can get wrong cheaply is checked before the model loads.
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold {threshold} is not a probability; give a value between 0 and 1.")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1.")
    suffix = check_output_path(output, SUFFIXES)
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise OutputError("writing .parquet needs pyarrow; pip install 'rnaernie-convert[embed]' (or pyarrow), "
                              "or write .csv.") from None
    k, n = parse_shard(shard) if shard else (1, 1)
    pairs = read_pairs(source)
    first = next(pairs, None)  # opens the file and checks its header now
    pairs = itertools.chain([first] if first else [], pairs)

    scorer = InteractionModel.from_pretrained(model, device=device, dtype=dtype)
    progress = progress_bar(quiet, "scoring", " pairs")
    started = time.perf_counter()
    labels, predictions, logit_1 = [], [], []
    written = positive = 0
    fields = (("index",) if shard else ()) + FIELDS
    with atomic_output(output) as temporary, _writer(temporary, suffix, fields) as write:
        for written, (pair, logits) in enumerate(scorer.iter_logits(select_shard(pairs, k, n), batch_size),
                                                 start=1):
            p = float(probability(logits))
            prediction = int(p > threshold)
            row = {"a_name": pair.a_name, "b_name": pair.b_name, "probability": p, "prediction": prediction,
                   "logit_0": float(logits[0]), "logit_1": float(logits[1])}
            if shard:
                row = {"index": (written - 1) * n + k - 1, **row}
            write(row)
            positive += prediction
            if pair.label is not None:
                labels.append(pair.label)
                predictions.append(prediction)
                logit_1.append(logits[1])
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.close()
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


class _writer:
    """`with _writer(path, suffix, fields) as write: write(row)`: rows streamed to CSV, JSON or Parquet."""

    def __init__(self, path: Path, suffix: str, fields: tuple[str, ...]):
        self.path, self.suffix, self.fields = path, suffix, fields

    def __enter__(self):
        if self.suffix == ".csv":
            import csv

            self.handle = open(self.path, "w", encoding="utf-8", newline="")
            self.csv = csv.writer(self.handle, lineterminator="\n")
            self.csv.writerow(self.fields)
            return lambda row: self.csv.writerow([_cell(row[field]) for field in self.fields])
        if self.suffix == ".json":
            import json

            self.handle = open(self.path, "w", encoding="utf-8")
            self.handle.write("[")
            self.rows = 0

            def write_json(row):
                self.handle.write(("\n" if not self.rows else ",\n") + json.dumps(row, ensure_ascii=False))
                self.rows += 1
            return write_json
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"index": pa.int64(), "a_name": pa.string(), "b_name": pa.string(), "probability": pa.float64(),
                 "prediction": pa.int8(), "logit_0": pa.float32(), "logit_1": pa.float32()}
        self.schema = pa.schema([(field, types[field]) for field in self.fields])
        self.parquet = pq.ParquetWriter(self.path, self.schema)
        self.buffer: list[dict] = []

        def write_parquet(row):
            self.buffer.append(row)
            if len(self.buffer) == _PARQUET_ROWS:
                self._flush()
        return write_parquet

    def _flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            self.parquet.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def __exit__(self, kind, value, traceback):
        if self.suffix == ".parquet":
            if kind is None:
                self._flush()
            self.parquet.close()
            return False
        if kind is None and self.suffix == ".json":
            self.handle.write("\n]\n" if self.rows else "]\n")
        self.handle.close()
        return False


def _cell(value) -> str:
    """Floats with 9 significant digits (a float32 logit reads back exactly); the rest as written."""
    return f"{value:.9g}" if isinstance(value, float) else str(value)

"""`rnaernie embed MODEL INPUT -o OUT`: one embedding per record (or per nucleotide), streamed to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnaernie.cli.app import Progress, app, count
from rnaernie.cli.options import (BatchTokensOpt, DeviceOpt, DtypeOpt, InputArg, LongOpt, ModelArg, OutPathOpt, QuietOpt,
                                  ShardOpt, SkipEmptyOpt)
from rnaernie.console import DebugOpt, err, run_guarded
from rnaernie.embedding import DEFAULT_BATCH_TOKENS

PoolingOpt = Annotated[str, typer.Option(
    "--pooling", metavar="cls|mean|none",
    help="cls: the [CLS] state; mean: mean over nucleotide states (no [CLS], [SEP], padding); "
         "none: one state per nucleotide (.npz or .parquet).")]
LayerOpt = Annotated[int, typer.Option(
    "--layer", metavar="N", help="hidden_states index: 0 the embedding output, 1..L a layer, -1 the last.")]


@app.command(no_args_is_help=True)
def embed(model: ModelArg, input: InputArg, output: OutPathOpt, pooling: PoolingOpt = "cls", layer: LayerOpt = -1,
          long: LongOpt = "truncate", batch_tokens: BatchTokensOpt = DEFAULT_BATCH_TOKENS, device: DeviceOpt = "auto",
          dtype: DtypeOpt = "float32", shard: ShardOpt = None, skip_empty: SkipEmptyOpt = False,
          quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Embed the RNA sequences of INPUT with MODEL and write them to OUT (.npy, .npz or .parquet).

    Output formats: .npy float32 [N, hidden] in input order (pooled only); .npz with embeddings, ids and
    index (any pooling); .parquet with one row per record: index, id, embedding (any pooling; needs pyarrow).
    """
    run_guarded(debug, lambda: run_embed(model, input, output, pooling=pooling, layer=layer, long=long,
                                         batch_tokens=batch_tokens, device=device, dtype=dtype, shard=shard,
                                         skip_empty=skip_empty, quiet=quiet))


def run_embed(model: str, source: str, output: Path, *, pooling: str, layer: int, long: str, batch_tokens: int,
              device: str, dtype: str, shard: str | None, skip_empty: bool, quiet: bool) -> int:
    from rnaernie.embedding import Embedder, Pooling, check_batch_tokens
    from rnaernie.embedding_files import check_embedding_output, embedding_writer
    from rnaernie.output import atomic_output
    from rnaernie.sequences import LongMode, Shard, opened, read_records

    # Everything the user can get wrong cheaply is checked before the model loads.
    mode = Pooling.parse(pooling)
    LongMode.parse(long)
    check_batch_tokens(batch_tokens)
    suffix = check_embedding_output(output, mode)
    part = Shard.parse(shard)
    records = opened(read_records(source, skip_empty=skip_empty))

    embedder = Embedder(model, pooling=pooling, layer=layer, long=long, batch_tokens=batch_tokens, device=device,
                        dtype=dtype)
    written = 0
    with (Progress(quiet, "embedding", rate=lambda: embedder.stats.nucleotides) as progress,
          atomic_output(output) as temporary,
          embedding_writer(temporary, suffix, mode, embedder.hidden_size) as writer):
        for written, (record_id, array) in enumerate(embedder.iter_embeddings(records, shard=part), start=1):
            writer.add(part.index(written - 1), record_id, array)
            progress.step()
    if not quiet:
        _summary(embedder, output, written, shard)
    return 0


def _summary(embedder, output: Path, written: int, shard: str | None) -> None:
    from rnaernie.embedding import Pooling

    stats = embedder.stats
    shape = (f"[{written}, {embedder.hidden_size}]" if embedder.pooling is not Pooling.NONE
             else f"{written} x [length, {embedder.hidden_size}]")
    where = f" (shard {shard})" if shard else ""
    err(f"embedded {count(written, 'record')}{where}, {count(stats.nucleotides, 'nucleotide')}, into {output}: "
        f"float32 {shape}, pooling {embedder.pooling.value}, layer {embedder.layer} of "
        f"{embedder.model.config.num_hidden_layers}.")
    if stats.unknown:
        err(f"[UNK]: {count(stats.unknown, 'token')} in {count(stats.unknown_records, 'record')} "
            "(characters other than A, C, G, U/T).")
    else:
        err("[UNK]: none (every character was A, C, G, U or T).")
    limit = embedder.max_nucleotides
    if stats.truncated:
        err(f"{count(stats.truncated, 'record')} over {limit} nt cut to the first {limit} "
            "(--long chunk embeds them whole).")
    if stats.chunked:
        err(f"{count(stats.chunked, 'record')} over {limit} nt embedded as windows of {limit} nt.")

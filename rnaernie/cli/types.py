"""`rnaernie types MODEL INPUT -o OUT.json`: stage one of type-guided classification, the likely ncRNA classes."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from rnaernie.cli.app import app, read_batches, report_written
from rnaernie.cli.options import DeviceOpt, InputArg, ModelArg, OutPathOpt, QuietOpt, SkipEmptyOpt, TopKOpt
from rnaernie.console import DebugOpt, run_guarded


@app.command()
def types(model: ModelArg, input: InputArg, output: OutPathOpt, top_k: TopKOpt = 3,
          long: Annotated[str, typer.Option(
              "--long", metavar="truncate|chunk",
              help="truncate (read the first 508 nt), or chunk (the lncRNA layout: 512-token chunks with [IND] at "
                   "509 and the slot at 510 of each, the maximum of the class scores over chunks).")] = "truncate",
          device: DeviceOpt = "auto", skip_empty: SkipEmptyOpt = False, quiet: QuietOpt = False,
          debug: DebugOpt = False) -> None:
    """Name the likely ncRNA classes of each sequence, as RNAErnie's pre-trained model does after [IND].

    MODEL is the converted pre-trained (masked-LM) folder. OUT.json is a list in input order:
    {"id", "probabilities": {class: p for every class token}, "top": [[class, p], ...]}, the top-k
    probabilities renormalised to sum 1. Each sequence is read as [CLS] seq [IND] [PAD] [SEP], at most
    508 nucleotides (longer ones are cut), one sequence at a time; with --long chunk, in 512-token
    chunks (at most 3060 nucleotides).
    """

    def body() -> None:
        from rnaernie.long_sequence import MAX_CHUNKED_NUCLEOTIDES
        from rnaernie.output import write_json_list
        from rnaernie.sequences import LongMode
        from rnaernie.type_guided import LONG_MODES, MAX_PROMPT_NUCLEOTIDES, TypeIndicator, check_top_k

        started = time.perf_counter()
        mode = LongMode.parse(long, LONG_MODES)
        batches = read_batches(input, output, skip_empty, top_k)
        indicator = TypeIndicator.from_pretrained(model, device)
        check_top_k(top_k, len(indicator.class_tokens))
        truncated = 0

        def items():
            nonlocal truncated
            for records in batches:
                for record, prediction in zip(records, indicator.predict([r.sequence for r in records], top_k, mode)):
                    truncated += prediction.truncated
                    yield {"id": record.id, "probabilities": prediction.probabilities,
                           "top": [[name, p] for name, p in prediction.top]}

        count = write_json_list(output, items())
        if not quiet:
            limit = MAX_CHUNKED_NUCLEOTIDES if mode is LongMode.CHUNK else MAX_PROMPT_NUCLEOTIDES
            report_written("types", count, output, time.perf_counter() - started, truncated, limit)

    run_guarded(debug, body)

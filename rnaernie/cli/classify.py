"""`rnaernie classify CLASSIFIER INPUT -o OUT.json`: a converted classifier's labels, optionally type-guided."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from rnaernie.cli.app import app, read_batches, report_written
from rnaernie.cli.options import (ClassifierArg, DeviceOpt, InputArg, OutPathOpt, QuietOpt, SkipEmptyOpt,
                                  TopKOpt)
from rnaernie.console import DebugOpt, run_guarded


@app.command()
def classify(
    classifier: ClassifierArg,
    input: InputArg,
    output: OutPathOpt,
    two_stage: Annotated[Optional[str], typer.Option(
        "--two-stage", metavar="INDICATOR",
        help="Type-guided: the converted pre-trained folder names each sequence's top-k classes, the classifier "
             "runs once per class and its logits are weighted by their probabilities.")] = None,
    top_k: TopKOpt = 3,
    long: Annotated[str, typer.Option(
        "--long", help="Sequences over 510 nt: truncate (read the first 510; 508 with --two-stage), or chunk "
                       "(512-token chunks, logits averaged, as the lncRNA classifiers; with --two-stage the "
                       "indicator's maximum over chunks).")] = "truncate",
    device: DeviceOpt = "auto",
    skip_empty: SkipEmptyOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Classify each sequence with a converted RNAErnie classifier.

    OUT.json is a list in input order: {"id", "label", "logits": [...]}. With --two-stage INDICATOR,
    each sequence is read as [CLS] seq [IND] <class> [SEP] (at most 508 nucleotides) for each of the
    indicator's top-k classes, and the logits are RNAErnie's weighted ensemble. With --long chunk as
    well, each 512-token chunk gets [IND] at position 509 and the class at 510, as the official lncRNA
    classifiers read it.
    """

    def body() -> None:
        from rnaernie.classify import LONG_MODES, SequenceClassifier
        from rnaernie.long_sequence import MAX_CHUNKED_NUCLEOTIDES
        from rnaernie.output import write_json_list
        from rnaernie.sequences import MAX_NUCLEOTIDES, LongMode
        from rnaernie.type_guided import MAX_PROMPT_NUCLEOTIDES, TypeGuidedClassifier, TypeIndicator, check_top_k

        started = time.perf_counter()
        mode = LongMode.parse(long, LONG_MODES)
        batches = read_batches(input, output, skip_empty, top_k)
        if two_stage:
            indicator = TypeIndicator.from_pretrained(two_stage, device)
            check_top_k(top_k, len(indicator.class_tokens))
            model = TypeGuidedClassifier.from_pretrained(classifier, device)
        else:
            model = SequenceClassifier.from_pretrained(classifier, device)
        truncated = 0

        def logits_of(sequences: list[str]):
            nonlocal truncated
            if not two_stage:
                if mode is LongMode.TRUNCATE:
                    truncated += sum(len(model.tokenizer(s, add_special_tokens=False)["input_ids"]) > MAX_NUCLEOTIDES
                                     for s in sequences)
                return model.logits(sequences, mode)
            predictions = indicator.predict(sequences, top_k, mode)
            truncated += sum(p.truncated for p in predictions)
            return model.two_stage_logits(sequences, predictions, mode)

        def items():
            for records in batches:
                for record, row in zip(records, logits_of([r.sequence for r in records])):
                    yield {"id": record.id, "label": model.label_of(row), "logits": [float(v) for v in row]}

        count = write_json_list(output, items())
        if not quiet:
            limit = MAX_CHUNKED_NUCLEOTIDES if mode is LongMode.CHUNK else MAX_PROMPT_NUCLEOTIDES if two_stage \
                else MAX_NUCLEOTIDES
            report_written("labels", count, output, time.perf_counter() - started, truncated, limit)

    run_guarded(debug, body)

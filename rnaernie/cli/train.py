"""`rnaernie train MODEL DATA -o OUT --task contact|sequence`: fine-tuning with transformers' Trainer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rnaernie.cli.app import app
from rnaernie.cli.options import DeviceOpt, ModelArg, QuietOpt
from rnaernie.console import DebugOpt, err, run_guarded

DataArg = Annotated[str, typer.Argument(
    metavar="DATA", show_default=False,
    help="contact: a dot-bracket file (>id, sequence, structure) or a folder of .bpseq/.ct/.dbn files; "
         "sequence: FASTA with '>id label' headers, or CSV with id,sequence,label columns.")]
OutFolderOpt = Annotated[Path, typer.Option(
    "--output", "-o", metavar="OUT", show_default=False,
    help="Folder to create (must not exist, or be empty); it appears only when training is complete.")]


@app.command(no_args_is_help=True)
def train(
    model: ModelArg,
    data: DataArg,
    output: OutFolderOpt,
    task: Annotated[str, typer.Option("--task", metavar="contact|sequence", show_default=False,
                                      help="contact: base pairs; sequence: one label per sequence.")],
    head: Annotated[str, typer.Option("--head", metavar="hidden|attention",
                                      help="contact head: bilinear on the last hidden states, or ESM's regression "
                                           "on all attention maps.")] = "hidden",
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", show_default=False, help="Passes over DATA [default: 50, the official scripts' value for both tasks].")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", show_default=False, help="Stop after this many optimiser steps (overrides --epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", show_default=False,
        help="Records per step and process [default, official: contact 1 (run_ssp.py), sequence 50 "
             "(run_seq_cls.py)].")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        "--learning-rate", show_default=False,
        help="Constant learning rate [default, official: contact 1e-3 (run_ssp.py's Adam), sequence 1e-4 "
             "(run_seq_cls.py's AdamW, weight decay 0.01)].")] = None,
    positive_weight: Annotated[float, typer.Option(
        "--positive-weight", help="contact: loss weight of paired cells (1: plain cross-entropy; no official "
                                  "setting).")] = 10.0,
    freeze_encoder: Annotated[bool, typer.Option(
        "--freeze-encoder", help="Train the head only (the encoder's weights stay as loaded).")] = False,
    eval_data: Annotated[Optional[str], typer.Option(
        "--eval", metavar="DATA", show_default=False,
        help="Scored before training and after each epoch: contact F1 (as rnaernie fold + score), "
             "sequence accuracy.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the new head, the shuffling and dropout "
                                                     "(the official scripts use 0).")] = 0,
    save_steps: Annotated[Optional[int], typer.Option(
        "--save-steps", show_default=False, help="Checkpoint every N steps (default: each epoch).")] = None,
    type_guided: Annotated[Optional[str], typer.Option(
        "--type-guided", metavar="INDICATOR", show_default=False,
        help="sequence: train RNAErnie's type-guided way (run_seq_cls.py --two_stage): the converted pre-trained "
             "folder INDICATOR, frozen, names each record's top-k classes; the loss is the cross-entropy of the "
             "classifier's logits summed over them, weighted by their probabilities. Records are cut to 508 nt "
             "unless --long chunk.")
    ] = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", help="--type-guided: how many likely classes to keep, renormalised to sum 1 (official: "
                        "run_seq_cls.py's --top_k 3).")] = 3,
    long: Annotated[str, typer.Option(
        "--long", metavar="truncate|chunk",
        help="--type-guided: truncate (the first 508 nt, the nRC layout), or chunk (the lncRNA layout: up to 6 "
             "chunks of 512 tokens, the indicator's maximum over chunks, the classifier's mean; run_seq_cls.py "
             "for lncRNA_H/M).")] = "truncate",
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fine-tune MODEL on DATA and write the trained model to OUT.

    contact: OUT is a stock BertModel folder (AutoModel loads it) plus contact_head.safetensors, which
    rnaernie fold reads. sequence: OUT is a stock BertForSequenceClassification folder with id2label,
    which rnaernie classify and AutoModelForSequenceClassification load; with --type-guided it also holds
    the trained [IND] and class-token rows (type_guided.safetensors) for rnaernie classify --two-stage, and
    training.json's history names the --eval objective and accuracy loss and accuracy. Checkpoints go to
    OUT.checkpoints/ each epoch; run the same command again to resume after an interruption. Records
    over 510 nt: contact leaves them out (and says how many), sequence reads the first 510 (--type-guided:
    508, or with --long chunk up to 3060 in chunks).
    Runs unchanged under torchrun (several processes or machines); only rank 0 writes.
    """
    from rnaernie.training import checkpoints_folder

    kept = checkpoints_folder(output)
    interrupted = f"no output was written; checkpoints are kept in {kept}, run the same command to resume"
    run_guarded(debug, lambda: run_train(
        model, data, output, task=task, head=head, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        learning_rate=learning_rate, positive_weight=positive_weight, freeze_encoder=freeze_encoder,
        eval_data=eval_data, seed=seed, save_steps=save_steps, device=device, quiet=quiet,
        type_guided=type_guided, top_k=top_k, long=long),
        describe=lambda exc: _describe(exc, interrupted))


def _describe(exc: BaseException, interrupted: str) -> tuple[str, int]:
    from rnaernie.errors import describe

    return describe(exc, interrupted)


def run_train(model: str, data: str, output: Path, **options) -> int:
    from rnaernie.training import Task, TrainSettings, check_settings

    settings = TrainSettings(model=model, data=data, output=str(output), **options)
    check_settings(settings)  # before torch loads: a mistyped option costs nothing
    from rnaernie.training import train as run

    quiet = settings.quiet
    result = run(settings, progress=None if quiet else err)
    if result.is_main and not quiet:
        resumed = f", resumed from {Path(result.resumed_from).name}" if result.resumed_from else ""
        last = result.history[-1] if result.history else {}
        scores = ", ".join(f"{k.removeprefix('eval_')} {v:.4g}" for k, v in last.items()
                           if k.startswith("eval_") and k != "eval_loss" or settings.type_guided and k == "accuracy")
        head = f"{settings.head} head, " if settings.task is Task.CONTACT else ""
        err(f"trained a {settings.task.value} model ({head}"
            f"{result.steps} steps, {result.epochs:.2f} epochs, {result.seconds:.1f} s{resumed})"
            f"{'; eval ' + scores if scores else ''}; wrote {output}.")
        if result.skipped:
            err(f"{result.skipped} record{'s' if result.skipped > 1 else ''} over 510 nt left out (the model reads "
                "at most 510 nt).")
    sys.stderr.flush()
    return 0

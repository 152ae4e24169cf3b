"""`rnaernie fold MODEL INPUT -o OUT`: structures from a contact model (pair probabilities, decoded) or from
the official secondary-structure model (encoder, network and folding engine: `rnaernie.structure_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rnaernie.cli.app import Progress, app, count
from rnaernie.cli.options import (BatchTokensOpt, DeviceOpt, LongOpt, PlotOpt, QuietOpt, ShardOpt,
                                  SkipEmptyOpt)
from rnaernie.console import DebugOpt, err, run_guarded

FOLDER_FORMATS = ("bpseq", "ct")
FILE_SUFFIXES = (".dbn", ".npz")

ContactModelArg = Annotated[str, typer.Argument(metavar="MODEL", show_default=False,
                                                help="A folder with a trained contact head (made by rnaernie train "
                                                     "--task contact), or a structure model (rnaernie-convert "
                                                     "--backbone).")]
FoldInputArg = Annotated[str, typer.Argument(
    metavar="INPUT", show_default=False,
    help="FASTA (optionally .gz) or one sequence a line ('-' reads stdin), or a .dbn file (its sequences are folded).")]
FoldOutOpt = Annotated[Path, typer.Option(
    "--output", "-o", metavar="OUT", show_default=False,
    help="A .dbn file (dot-bracket), a .npz file (probability matrices), or a folder with --format bpseq|ct.")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", metavar="bpseq|ct", show_default=False, help="Write one file per record into the folder OUT.")]
ThresholdOpt = Annotated[float, typer.Option(
    "--threshold", metavar="P", help="Only pairs with a probability above P can be chosen.")]
PseudoknotsOpt = Annotated[bool, typer.Option(
    "--pseudoknots", help="Allow crossing pairs (maximum-weight matching) instead of a nested structure.")]
AnyPairsOpt = Annotated[bool, typer.Option(
    "--any-pairs", help="Allow any two bases to pair, not only AU, GC and GU.")]


@app.command(no_args_is_help=True)
def fold(model: ContactModelArg, input: FoldInputArg, output: FoldOutOpt, format: FormatOpt = None,
         threshold: ThresholdOpt = 0.5, pseudoknots: PseudoknotsOpt = False, any_pairs: AnyPairsOpt = False,
         long: LongOpt = "truncate", batch_tokens: BatchTokensOpt = 2048, device: DeviceOpt = "auto",
         shard: ShardOpt = None, skip_empty: SkipEmptyOpt = False, plot: PlotOpt = None, quiet: QuietOpt = False,
         debug: DebugOpt = False) -> None:
    """Predict the secondary structure of every RNA of INPUT with MODEL and write them to OUT.

    Each structure has one partner per base at most, canonical pairs (AU, GC, GU) unless --any-pairs,
    hairpins of at least 3 nt, only pairs above --threshold, and is the one of greatest expected accuracy:
    nested (plain dot-bracket) by default, crossing allowed with --pseudoknots.
    """
    run_guarded(debug, lambda: run_fold(model, input, output, format=format, threshold=threshold,
                                        pseudoknots=pseudoknots, any_pairs=any_pairs, long=long,
                                        batch_tokens=batch_tokens, device=device, shard=shard,
                                        skip_empty=skip_empty, plot=plot, quiet=quiet))


def run_fold(model: str, source: str, output: Path, *, format: str | None, threshold: float, pseudoknots: bool,
             any_pairs: bool, long: str, batch_tokens: int, device: str, shard: str | None, skip_empty: bool,
             plot: Path | None, quiet: bool) -> int:
    from rnaernie.decoding import require_networkx
    from rnaernie.folding import StructurePredictor, check_fold_options
    from rnaernie.plotting import check_plot_folder, plot_folder
    from rnaernie.sequences import Shard, opened
    from rnaernie.structure_model import MixedFoldPredictor, is_structure_model

    # Everything the user can get wrong cheaply is checked before the model loads.
    check_fold_options(threshold, long, batch_tokens)
    kind = _output_kind(output, format)
    if plot is not None:
        check_plot_folder(plot)
    if pseudoknots:
        require_networkx()
    part = Shard.parse(shard)
    records = opened(_read_input(source, skip_empty))

    if is_structure_model(model):
        _check_structure_model_options(kind, threshold, pseudoknots, any_pairs)
        predictor = MixedFoldPredictor(model, long=long, device=device)
    else:
        predictor = StructurePredictor(model, threshold=threshold, pseudoknots=pseudoknots, any_pairs=any_pairs,
                                       long=long, batch_tokens=batch_tokens, device=device)

    def observed(progress):
        for prediction in predictor.iter_predictions(records, shard=part):
            if plots is not None:
                plots.add(prediction.id, len(prediction.structure.sequence), probabilities=prediction.probabilities,
                          predicted=prediction.structure.pairs)
            progress.step()
            yield prediction

    with Progress(quiet, "folding", rate=lambda: predictor.stats.nucleotides) as progress, plot_folder(plot) as plots:
        written = _write(output, kind, observed(progress), part)
    if not quiet:
        _summary(predictor, output, written, shard)
    return 0


def _check_structure_model_options(kind: str, threshold: float, pseudoknots: bool, any_pairs: bool) -> None:
    """A structure model folds with its engine: no probabilities to write or threshold, nested canonical pairs."""
    from rnaernie.decoding import DEFAULT_THRESHOLD
    from rnaernie.errors import InputError

    if kind == "npz":
        raise InputError("a structure model gives structures, not pair probabilities; name OUT .dbn, or pass "
                         "--format bpseq or --format ct.")
    given = [flag for flag, used in (("--threshold", threshold != DEFAULT_THRESHOLD), ("--pseudoknots", pseudoknots),
                                     ("--any-pairs", any_pairs)) if used]
    if given:
        raise InputError(f"{given[0]} applies to contact models; a structure model folds with its own engine "
                         "(nested structures, AU/GC/GU pairs); drop it.")


def _read_input(source: str, skip_empty: bool):
    """INPUT's records; a dot-bracket file (.dbn, .db) gives its sequences, so a reference set folds as it is."""
    from rnaernie.sequences import Record, read_records
    from rnaernie.structures import DBN_SUFFIXES, read_structures

    if Path(source).suffix.lower() in DBN_SUFFIXES:
        return iter([Record(structure.id, structure.sequence) for structure in read_structures(source)])
    return read_records(source, skip_empty=skip_empty)


def _output_kind(output: Path, format: str | None) -> str:
    """'dbn', 'npz', 'bpseq' or 'ct', checked against the path before any work."""
    from rnaernie.errors import OutputError
    from rnaernie.output import check_output_folder, check_output_path

    suffix = Path(output).suffix.lower()
    if format is None:
        if suffix not in FILE_SUFFIXES:
            raise OutputError(f"cannot tell the output format from {Path(output).name!r}; end it with .dbn or .npz, "
                              "or pass --format bpseq or --format ct to write a folder.")
        check_output_path(output, FILE_SUFFIXES)
        return suffix[1:]
    if format == "dbn" and suffix == ".dbn":
        check_output_path(output, (".dbn",))
        return "dbn"
    if format not in FOLDER_FORMATS:
        raise OutputError(f"--format {format!r} is not known; use bpseq or ct (one file per record in the folder "
                          "OUT), or name OUT .dbn or .npz.")
    if suffix in FILE_SUFFIXES:
        raise OutputError(f"--format {format} writes a folder, but {Path(output).name!r} names a {suffix} file; "
                          f"drop --format, or pass a folder path.")
    check_output_folder(output)
    return format


def _write(output: Path, kind: str, predictions, part) -> int:
    from rnaernie.embedding_files import npz_writer
    from rnaernie.output import atomic_output
    from rnaernie.structures import write_structures

    if kind == "npz":
        written = 0
        with atomic_output(output) as temporary, npz_writer(temporary, "probabilities", (), offsets=True) as writer:
            for written, prediction in enumerate(predictions, start=1):
                writer.add(part.index(written - 1), prediction.id, prediction.probabilities.reshape(-1))
        return written
    return write_structures(output, (prediction.structure for prediction in predictions), kind)


def _summary(predictor, output: Path, written: int, shard: str | None) -> None:
    stats = predictor.stats
    where = f" (shard {shard})" if shard else ""
    mode = "crossing allowed" if predictor.pseudoknots else "nested"
    if hasattr(predictor, "threshold"):
        how = f"{mode}, {'any pairs' if predictor.any_pairs else 'AU/GC/GU pairs'}, probability above " \
              f"{predictor.threshold:g}"
    else:
        how = f"{mode}, AU/GC/GU pairs, the structure model's best-scoring structure"
    err(f"folded {count(written, 'record')}{where}, {count(stats.nucleotides, 'nucleotide')}, into {output}: "
        f"{count(stats.pairs, 'base pair')} ({how}).")
    limit = predictor.max_nucleotides
    if stats.truncated:
        err(f"{count(stats.truncated, 'record')} over {limit} nt folded on the first {limit} (the rest left "
            "unpaired; --long chunk folds windows of 510).")
    if stats.chunked:
        err(f"{count(stats.chunked, 'record')} over {limit} nt folded as windows of {limit} nt (no pair between "
            "windows).")

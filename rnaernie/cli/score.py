"""`rnaernie score PRED REF`: precision, recall, F1 and MCC over base pairs, per record and mean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from rnaernie.cli.app import app, count, run_guarded
from rnaernie.cli.options import DebugOpt, PlotOpt, QuietOpt

PredArg = Annotated[Path, typer.Argument(metavar="PRED", show_default=False,
                                         help="Predicted structures: a .dbn, .bpseq or .ct file, or a folder of them.")]
RefArg = Annotated[Path, typer.Argument(metavar="REF", show_default=False,
                                        help="Reference structures, in any of the same forms; records match by id.")]
ShiftOpt = Annotated[int, typer.Option(
    "--shift", metavar="0|1", help="1 adds the ±1-tolerant score UFold and E2Efold report (a pair one base off "
                                   "counts as found).")]
JsonOpt = Annotated[Optional[Path], typer.Option(
    "--json", metavar="FILE", show_default=False,
    help='Write {"mean": {...}, "records": [{"id", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "mcc"}]}.')]


@app.command(no_args_is_help=True)
def score(pred: PredArg, ref: RefArg, shift: ShiftOpt = 0, json_path: JsonOpt = None, plot: PlotOpt = None,
          quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Score the structures of PRED against those of REF (ViennaRNA's conventions, mean over records).

    Prints the mean precision, recall, F1 and MCC; --json keeps every record's figures.
    """
    run_guarded(debug, lambda: run_score(pred, ref, shift=shift, json_path=json_path, plot=plot, quiet=quiet))


def run_score(pred: Path, ref: Path, *, shift: int, json_path: Path | None, plot: Path | None, quiet: bool) -> int:
    from rnaernie.output import atomic_output, check_output_path
    from rnaernie.plotting import check_plot_folder, plot_folder
    from rnaernie.scoring import check_shift, match_records, mean_scores, score_structure
    from rnaernie.structures import read_structures

    check_shift(shift)
    if json_path is not None:
        check_output_path(json_path, (".json",))
    if plot is not None:
        check_plot_folder(plot)
    matched = match_records(read_structures(pred), read_structures(ref))
    rows, exact, shifted = [], [], []
    for predicted, reference in matched:
        scored = score_structure(predicted, reference)
        exact.append(scored)
        row = {"id": reference.id, **scored.as_dict()}
        if shift:
            shifted.append(score_structure(predicted, reference, shift=1))
            row["shifted"] = shifted[-1].as_dict()
        rows.append(row)
    summary = {"mean": mean_scores(exact), "records": rows}
    if shift:
        summary["mean"]["shifted"] = mean_scores(shifted)
    with plot_folder(plot) as plots:
        if plots is not None:
            for (predicted, reference), scored in zip(matched, exact):
                plots.add(reference.id, len(reference.sequence), predicted=predicted.pairs,
                          reference=reference.pairs, title=f", F1 {scored.f1:.3f}")
        if json_path is not None:
            with atomic_output(json_path) as temporary:
                temporary.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        mean = summary["mean"]
        print(f"{count(len(rows), 'record')}, mean over records: precision {mean['precision']:.4f}, "
              f"recall {mean['recall']:.4f}, F1 {mean['f1']:.4f}, MCC {mean['mcc']:.4f}")
        if shift:
            mean = mean["shifted"]
            print(f"shifted (±1): precision {mean['precision']:.4f}, recall {mean['recall']:.4f}, "
                  f"F1 {mean['f1']:.4f}, MCC {mean['mcc']:.4f}")
    return 0

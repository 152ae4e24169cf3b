"""`rnaernie-convert RELEASE_DIR OUT_DIR`: every checkpoint of the official release, converted and verified.

The official download holds one `model_state.pdparams` per folder: `output/<variant>/checkpoint_final/`
(the pre-trained model, with its `model_config.json`) and `output_ft/<task>/<dataset>/<variant>/` (the
fine-tuned models; the interaction and structure folders have no config). Each checkpoint found under
RELEASE_DIR is converted, as the single command converts one, into the same relative folder under OUT_DIR.
The kind of each is the registry's business (`convert.heads`): this module only walks the folders, picks
each one's config and label names, and reports.

- Config: the one beside the checkpoint; else `--config`; else the pre-trained model's of the same variant
  (`output/<variant>/checkpoint_final/`); else the release's pre-trained config when it has only one (or
  several identical); else none, and the kind decides as in the single command (the interaction model of
  the official size gets the bundled official config, anything else is asked for `--config`).
- Label names: where the dataset's folder says which classifier it is (`nRC`, `lncRNA_H`, `lncRNA_M`), the
  official names from the registry, checked against the classifier's number of outputs.
- The structure model (`output_ft/ssp/<dataset>/<variant>/`, MixedFold) holds no encoder: it is converted
  with the pre-trained checkpoint of the same variant (`output/<variant>/checkpoint_final/`) as its
  `--backbone`, through the same path; without one in the release it is left out, saying so.
- Left out, with the reason: `.pdparams` files not named `model_state.pdparams` (paddle.save's name in
  every official folder).
- OUT_DIR must be new or empty unless `--force`. Each checkpoint's folder is staged, verified and renamed
  into place on its own, as in the single command; a failure or interruption midway leaves the folders
  finished before it in place and never a half-written one. `--force` replaces each converted folder and
  touches nothing else in OUT_DIR. `--dtype`, `--vocab`, `--no-verify`, `--probe` and `--atol` apply to
  every checkpoint.
- Outcome: a table (stdout) of every checkpoint: converted and verified, left out and why, or failed and
  why, with the parity figures. A checkpoint that fails (bad input) does not stop the others. Exit 0 only
  when every convertible checkpoint passed; else 2 if any could not be converted (or none could), else 1
  (a parity failure: that folder is written, for inspection, as in the single command).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Callable

from convert.errors import ConversionError, NotConvertibleError, OutputDirError, ParityError, ReleaseInterrupted
from convert.heads import LNCRNA_LABELS, NRC_LABELS
from convert.paddle_config import CONFIG_FILE_NAMES
from convert.records import CONVERSION_RECORD, VERIFICATION_RECORD
from rnaernie.errors import Terminated

CHECKPOINT_NAME = "model_state.pdparams"
PRETRAINED = ("output", "*", "checkpoint_final")  # the pre-trained folders, relative to RELEASE_DIR
# The official classifiers' label names, by the dataset folder that holds them (RNAErnie run_seq_cls.py)
LABELS_BY_DATASET = {"nRC": NRC_LABELS, "lncRNA_H": LNCRNA_LABELS, "lncRNA_M": LNCRNA_LABELS}
BACKBONE_TASKS = ("ssp",)  # the fine-tuned tasks whose checkpoints hold no encoder (the structure model's)


class Status(Enum):
    PASSED = "passed"
    CONVERTED = "converted"  # --no-verify
    PARITY_FAILED = "PARITY FAILED"
    LEFT_OUT = "left out"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Found:
    """A checkpoint in the release, and what it will be converted with."""

    checkpoint: Path
    folder: Path  # relative to RELEASE_DIR (and to OUT_DIR)
    config: Path | None = None  # None: the kind decides (see the module docstring)
    config_note: str = "its own config"
    labels: tuple[str, ...] | None = None
    labels_note: str | None = None
    left_out: str | None = None  # why it is not converted at all
    backbone: Path | None = None  # the pre-trained checkpoint of the same variant, for a task without an encoder


@dataclass
class Outcome:
    found: Found
    status: Status
    kind: str | None = None
    note: str = ""
    figures: dict = field(default_factory=dict)  # max_abs (every output), logits (max |diff|), atol


def find_checkpoints(release_dir: Path, config: Path | None) -> list[Found]:
    """Every `.pdparams` file under RELEASE_DIR (symbolic links to folders are not followed), in path order."""
    files = []
    for folder, subfolders, names in os.walk(release_dir):
        subfolders.sort()
        files += [Path(folder) / name for name in sorted(names) if name.endswith(".pdparams")]
    if not files:
        raise ConversionError(f"{release_dir} holds no {CHECKPOINT_NAME} (in any folder under it); pass the "
                              "official release's folder, or a checkpoint file.")
    pretrained = _pretrained_configs(release_dir)
    return [_found(path, release_dir, config, pretrained) for path in files]


def _found(path: Path, release_dir: Path, config: Path | None, pretrained: dict[str, Path]) -> Found:
    found = _found_config(path, release_dir, config, pretrained)
    backbone = release_dir / PRETRAINED[0] / found.folder.name / PRETRAINED[2] / CHECKPOINT_NAME  # same variant
    if found.left_out or not set(BACKBONE_TASKS) & set(found.folder.parts[1:2]):
        return found
    if not backbone.is_file():
        return replace(found, left_out=f"it holds no encoder, and the release holds no pre-trained "
                                       f"{found.folder.name} checkpoint to feed it (convert it alone with --backbone)")
    return replace(found, backbone=backbone)


def _found_config(path: Path, release_dir: Path, config: Path | None, pretrained: dict[str, Path]) -> Found:
    folder = path.parent.relative_to(release_dir)
    if path.name != CHECKPOINT_NAME:
        return Found(path, folder, left_out=f"not named {CHECKPOINT_NAME}, as every checkpoint of the release is; "
                                            f"convert it alone: rnaernie-convert {path} OUT_DIR")
    own = next((path.parent / name for name in CONFIG_FILE_NAMES if (path.parent / name).is_file()), None)
    labels = next(((LABELS_BY_DATASET[part], part) for part in folder.parts if part in LABELS_BY_DATASET), None)
    labels_fields = {} if labels is None else {
        "labels": labels[0], "labels_note": f"the official {labels[1]} label names (from the folder name)"}
    if own is not None:
        return Found(path, folder, own, "its own config", **labels_fields)
    if config is not None:
        return Found(path, folder, config, f"--config {config}", **labels_fields)
    variant = folder.name
    if variant in pretrained:
        return Found(path, folder, pretrained[variant], f"the pre-trained {variant} config", **labels_fields)
    distinct = {file.read_bytes(): (name, file) for name, file in sorted(pretrained.items())}
    if len(distinct) == 1:
        name, file = next(iter(distinct.values()))
        return Found(path, folder, file, f"the pre-trained {name} config (no pre-trained {variant} in the release)",
                     **labels_fields)
    return Found(path, folder, None, "no config in the release for it", **labels_fields)


def _pretrained_configs(release_dir: Path) -> dict[str, Path]:
    """{variant: config file} of the pre-trained folders `output/<variant>/checkpoint_final/`."""
    configs = {}
    for folder in sorted(release_dir.glob("/".join(PRETRAINED))):
        file = next((folder / name for name in CONFIG_FILE_NAMES if (folder / name).is_file()), None)
        if file is not None:
            configs[folder.parent.name] = file
    return configs


def check_release_paths(release_dir: Path, out_dir: Path) -> None:
    """Refuse an OUT_DIR that overlaps RELEASE_DIR: with --force it would replace the checkpoints' own folders."""
    release, out = release_dir.resolve(), out_dir.resolve()
    if out == release or release in out.parents or out in release.parents:
        raise OutputDirError(f"{out_dir} overlaps the release folder {release_dir}; choose an output folder outside "
                             "it (and not holding it).")


def convert_release(release_dir: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                    vocab: str | Path | None = None, dtype: str = "float32", force: bool = False,
                    verify: bool = True, probe: str | Path | None = None, atol: float | None = None,
                    report: str | Path | None = None, say: Callable[[str], None] = lambda message: None,
                    show: Callable[[str], None] = print) -> list[Outcome]:
    """Convert (and verify) every checkpoint under `release_dir` into the same relative folders under `out_dir`.

    `show` gets the table. Returns the outcomes when every convertible checkpoint passed; otherwise raises,
    after the table: `ParityError` (exit 1) or `ConversionError` (exit 2), saying which and how many.
    """
    from convert.vocabulary import build_vocabulary, official_vocab_path, read_vocab_file
    from convert.writer import check_dtype, check_output_dir

    release_dir, out_dir = Path(release_dir), Path(out_dir)
    check_dtype(dtype)  # the problems every checkpoint would share are refused once, before anything is written
    check_release_paths(release_dir, out_dir)
    check_output_dir(out_dir, force)
    vocab_path = Path(vocab) if vocab else official_vocab_path()
    build_vocabulary(read_vocab_file(vocab_path), str(vocab_path))
    if config is not None and not Path(config).is_file():
        raise ConversionError(f"config file {config} does not exist; check the --config path.")
    if verify:
        from convert.verify import require_verify_dependencies

        require_verify_dependencies()
    found = find_checkpoints(release_dir, Path(config) if config else None)
    outcomes: list[Outcome] = []
    for number, item in enumerate(found, start=1):
        say(f"[{number}/{len(found)}] {item.folder.as_posix()}")
        target = out_dir / item.folder
        missing = [folder for folder in (target, *target.parents) if not folder.exists()
                   and (folder == out_dir or out_dir in folder.parents)]  # deepest first
        try:
            outcomes.append(_convert_one(item, out_dir, vocab=vocab, dtype=dtype, force=force, verify=verify,
                                         probe=probe, atol=atol, say=say))
        except KeyboardInterrupt as exc:
            _remove_empty(missing)
            raise _interrupted(exc, out_dir, outcomes, item, existed=target not in missing) from None
        if outcomes[-1].status in (Status.LEFT_OUT, Status.FAILED):
            _remove_empty(missing)  # the parent folders made for it, so OUT_DIR holds only converted folders
    show(release_table(release_dir, outcomes))
    if report:
        from convert.writer import write_json

        write_json(Path(report), report_record(release_dir, out_dir, outcomes))
    _raise_unless_all_passed(outcomes, out_dir)
    return outcomes


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another checkpoint's folder is in it) or already gone
            pass


def _interrupted(exc: KeyboardInterrupt, out_dir: Path, outcomes: list[Outcome], current: Found,
                 existed: bool) -> ReleaseInterrupted:
    """What an interruption left in OUT_DIR: every folder is committed whole or not at all (`convert.writer`)."""
    written = [o.found.folder.as_posix() for o in outcomes if o.status not in (Status.LEFT_OUT, Status.FAILED)]
    name = current.folder.as_posix()
    if existed:
        state = f"{name}, being converted, is either the new folder or the one that was there"
    elif (out_dir / current.folder / CONVERSION_RECORD).is_file():
        written.append(name)  # the signal came after its commit
        state = "nothing is half-written"
    else:
        state = f"{name}, being converted, was not written"
    signal, code = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
    again = "run the command again with --force to convert every checkpoint" if written or existed else \
        "run the command again"
    return ReleaseInterrupted(f"{signal}; {len(written)} converted folder(s) stay in {out_dir}"
                              f"{' (' + ', '.join(written) + ')' if written else ''}; {state}; {again}", code)


def _convert_one(found: Found, out_dir: Path, *, vocab, dtype: str, force: bool, verify: bool, probe, atol,
                 say: Callable[[str], None]) -> Outcome:
    from convert.pipeline import Verify, convert_and_verify

    if found.left_out:
        return Outcome(found, Status.LEFT_OUT, note=found.left_out)
    verification, status = None, Status.PASSED if verify else Status.CONVERTED
    try:
        result = convert_and_verify(found.checkpoint, out_dir / found.folder, config=found.config, vocab=vocab,
                                    dtype=dtype, force=force, labels=found.labels, backbone=found.backbone, say=say,
                                    verify=Verify(probe, atol) if verify else None)
        conversion, verification = result.conversion, result.verification
    except ParityError as exc:  # the folder is written, for inspection, as the single command does
        conversion, verification, status = exc.result.conversion, exc.verification, Status.PARITY_FAILED
    except NotConvertibleError as exc:
        return Outcome(found, Status.LEFT_OUT, note=f"{exc.description}: {exc.reason}")
    except ConversionError as exc:
        return Outcome(found, Status.FAILED, note=str(exc))
    labelled = conversion.plan.num_labels is not None  # the names served a classifier
    notes = [conversion.config_note or found.config_note, found.labels_note if labelled else None,
             f"with the pre-trained {found.folder.name} checkpoint as its encoder" if found.backbone else None]
    return Outcome(found, status, conversion.head.name, "; ".join(note for note in notes if note),
                   _figures(verification) if verification else {})


def _figures(verification: dict) -> dict:
    measured = {row["name"]: row["max_abs"] for row in verification["layers"] if row.get("max_abs") is not None}
    # the kind's own logits where it has no stock head (e.g. "interaction: logits")
    logits = verification.get("max_abs_logit_diff")
    if logits is None:
        logits = max((diff for name, diff in measured.items() if name.endswith(": logits")), default=None)
    return {"max_abs": max(measured.values(), default=None), "logits": logits, "atol": verification["atol"],
            "failure": verification.get("failure")}


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def release_table(release_dir: Path, outcomes: list[Outcome]) -> str:
    """One line per checkpoint: folder, kind, status, the worst max |diff| over every output, the logits', notes."""
    counts = {status: sum(o.status is status for o in outcomes) for status in Status}
    header = ", ".join(f"{count} {status.value}" for status, count in counts.items() if count)
    atol = next((o.figures["atol"] for o in outcomes if o.figures), None)
    rows = [(o.found.folder.as_posix(), o.kind or "-", o.status.value, _figure(o.figures.get("max_abs")),
             _figure(o.figures.get("logits")), o.figures.get("failure") or o.note) for o in outcomes]
    titles = ("checkpoint", "kind", "status", "max |diff|", "logits", "notes")
    widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(5)]
    lines = [f"{release_dir}: {len(outcomes)} checkpoint(s): {header}"
             + (f" (max |diff| over every output, logits alone; atol {atol:g})" if atol is not None else "")]
    for row in [titles, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    return "\n".join(line.rstrip() for line in lines)


def report_record(release_dir: Path, out_dir: Path, outcomes: list[Outcome]) -> dict:
    return {"release": str(release_dir), "out_dir": str(out_dir), "checkpoints": [
        {"folder": o.found.folder.as_posix(), "checkpoint": str(o.found.checkpoint), "status": o.status.value,
         "kind": o.kind, "config": str(o.found.config) if o.found.config else None, "notes": o.note, **o.figures}
        for o in outcomes]}


def _raise_unless_all_passed(outcomes: list[Outcome], out_dir: Path) -> None:
    failed = [o.found.folder.as_posix() for o in outcomes if o.status is Status.FAILED]
    diverged = [o.found.folder.as_posix() for o in outcomes if o.status is Status.PARITY_FAILED]
    if failed:
        raise ConversionError(f"{len(failed)} checkpoint(s) could not be converted ({', '.join(failed)}): the table "
                              "says why; the others are in place" + (f", {len(diverged)} of them failing parity"
                                                                     if diverged else ""))
    if diverged:
        raise ParityError(f"verification failed for {len(diverged)} checkpoint(s) ({', '.join(diverged)}): the "
                          f"table says where; their figures are in {out_dir}/<folder>/{VERIFICATION_RECORD}. "
                          "Do not publish them.")
    if not any(o.status in (Status.PASSED, Status.CONVERTED) for o in outcomes):
        raise ConversionError("nothing to convert: every checkpoint under the release folder is left out (the table "
                              "says why).")

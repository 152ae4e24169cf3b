"""`convert_and_verify`: read -> write -> verify -> publish, the one path of the default command and the release
walk: one `Conversion`, the folder written from it into a staging folder, verified there against it, then
made OUT_DIR (`convert.writer.staged_output`), so OUT_DIR never appears unverified."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from convert.card import render_card
from convert.conversion import Conversion, read_conversion
from convert.errors import ParityError
from convert.mapping import mapped_tensor
from convert.records import CONVERSION_RECORD
from convert.vocabulary import tokenizer_files
from convert.writer import check_dtype, check_output_dir, staged_output, write_json, write_safetensors


@dataclass(frozen=True)
class Verify:
    """Verify the folder before it is published, with these options."""

    probe: Path | None = None  # extra probe sequences
    atol: float | None = None
    report: Path | None = None  # a copy of the verification record


@dataclass
class ConversionResult:
    conversion: Conversion
    out_dir: Path
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    verification: dict | None = None  # None: not verified
    seconds: float = 0.0

    @property
    def head(self) -> str:
        return self.conversion.head.name

    @property
    def architecture(self) -> str:
        return self.conversion.head.architecture

    @property
    def left_out(self) -> tuple[str, ...]:
        return self.conversion.detection.left_out_keys

    def summary(self) -> str:
        conversion, files = self.conversion, self.files
        listed = ", ".join(f"{name} ({size / 1e6:.1f} MB)" if size > 1e5 else name for name, size in files.items())
        left_out = f"; left out {', '.join(self.left_out)} (no transformers equivalent)" if self.left_out else ""
        config = f"{conversion.config_note}; " if conversion.config_note else ""
        dropped = conversion.vocabulary.dropped_tokens
        return (f"found a {conversion.found} ({conversion.detection.decided_by}); {config}"
                f"wrote a {self.architecture}: {len(conversion.plan.target_shapes)} tensors, "
                f"{conversion.record['parameters']:,} parameters; dropped {len(dropped)} vocabulary tokens "
                f"({', '.join(dropped[:2])}, ...){left_out}; wrote {self.out_dir}: {listed} in {self.seconds:.2f} s")


def convert_and_verify(checkpoint: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                       vocab: str | Path | None = None, dtype: str = "float32", force: bool = False,
                       labels: str | Path | tuple[str, ...] | None = None, head: str | None = None,
                       backbone: str | Path | None = None, verify: Verify | None = None, say: Callable[[str], None] = lambda message: None
                       ) -> ConversionResult:
    """Convert a Paddle RNAErnie checkpoint into a Hugging Face folder at `out_dir`, verified if `verify` is given.

    `head`: the kind (a `Kind` value) where the tensor names cannot tell; `labels`: a labels file or the names;
    `backbone`: the pre-trained checkpoint that feeds a model without an encoder (the structure model).
    Raises `ConversionError` for bad input (`out_dir` untouched); `ParityError` (with the record and this
    result) when the folder, written all the same for inspection, does not reproduce the original.
    """
    started = time.perf_counter()
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_dtype(dtype)
    check_output_dir(out_dir, force)
    paddle_side = None
    if verify:
        from convert.verify.paddle_side import PaddleSide

        paddle_side = PaddleSide()  # imports Paddle while the checkpoint is read, builds while the folder is written
    try:
        conversion = read_conversion(checkpoint, config=config, vocab=vocab, dtype=dtype, labels=labels, head=head,
                                     backbone=backbone)
        if paddle_side:
            paddle_side.build(conversion)
        failure = None
        with staged_output(out_dir, force) as staging:
            write_folder(conversion, staging, say)
            verification = None
            if verify:
                from convert.verify.run import verify as verify_folder

                try:
                    verification = verify_folder(conversion, staging, probe=verify.probe, atol=verify.atol,
                                                 report=verify.report, say=say, staged_for=out_dir,
                                                 paddle_side=paddle_side)
                except ParityError as exc:
                    verification, failure = exc.verification, exc  # the folder is still written, for inspection
            files = {path.name: path.stat().st_size for path in sorted(staging.iterdir())}
    finally:
        if paddle_side:
            paddle_side.stop()  # a conversion that failed or was interrupted leaves no child behind
    result = ConversionResult(conversion, out_dir, files, verification, time.perf_counter() - started)
    say(result.summary())
    if failure:
        raise ParityError(str(failure), verification, result)
    return result


def convert_checkpoint(checkpoint: str | Path, out_dir: str | Path, **options) -> ConversionResult:
    """Convert without verifying (the Python API of `--no-verify`); options as `convert_and_verify`'s."""
    return convert_and_verify(checkpoint, out_dir, **options)


def write_folder(conversion: Conversion, folder: Path, say: Callable[[str], None]) -> None:
    """Write every file of the converted folder into `folder` (a staging folder), streaming the weights."""
    plan, vocabulary, source = conversion.plan, conversion.vocabulary, conversion.source
    tensors, pad_id = source.tensors, conversion.paddle_config.pad_token_id
    rows_by_target = {row.target: row for row in plan.rows}
    say(f"writing {len(plan.target_shapes)} tensors to model.safetensors ({conversion.dtype})")
    write_safetensors(
        folder / "model.safetensors", plan.target_shapes, conversion.dtype,
        lambda name: mapped_tensor(rows_by_target[name], tensors, vocabulary, pad_id), metadata={"format": "pt"},
        on_tensor=lambda name: source.release(tensors[rows_by_target[name].source]))
    for side in conversion.detection.layout.side_files:  # in their own dtype whatever --dtype says
        if side.name in plan.side_files:
            side_rows, side_shapes = plan.side_files[side.name]
            by_target = {row.target: row for row in side_rows}
            write_safetensors(folder / side.name, side_shapes, side.dtype,
                              lambda name: mapped_tensor(by_target[name], tensors, vocabulary, pad_id),
                              metadata=side.metadata(vocabulary, tensors) if side.metadata else {})
    write_json(folder / "config.json", conversion.transformers_config)
    for name, text in tokenizer_files(vocabulary).items():
        (folder / name).write_text(text, encoding="utf-8")
    write_json(folder / CONVERSION_RECORD, conversion.record)
    (folder / "README.md").write_text(render_card(conversion.record, verification=None), encoding="utf-8")

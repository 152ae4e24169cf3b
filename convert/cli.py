"""`rnaernie-convert CHECKPOINT OUT_DIR`: convert, verify, optionally push.

Thin layer over the Python API. Heavy libraries (numpy, Paddle, torch, transformers) are
imported inside the command, never at module level, so `--help` is instant. Every exception is
turned into one line by `convert.errors.describe`, the single place that knows the messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convert.errors import EXIT_OK, ConversionError, ParityError, describe
from convert.options import CheckpointArg, HubOptions, OutDirArg, RepoIdOpt, with_hub_options
from rnaernie.console import DebugOpt, err, new_app, run_command_line
from rnaernie.console import run_guarded as run_guarded_with
from rnaernie.signals import command_line_process, end_run_at_commit

app = new_app()


def run_guarded(debug: bool, body) -> None:
    """Run `body()`; any exception becomes one stderr line (via `convert.errors.describe`) and an exit code."""
    run_guarded_with(debug, body, describe)


@app.command()
@with_hub_options
def convert(
    checkpoint: CheckpointArg,
    out_dir: OutDirArg,
    config: Annotated[Optional[Path], typer.Option(help="model_config.json / config.json (default: beside the checkpoint).")] = None,
    vocab: Annotated[Optional[Path], typer.Option(help="Vocabulary file (default: the official vocab_1MER.txt).")] = None,
    dtype: Annotated[str, typer.Option(help="Output weights: float32, float16 or bfloat16.")] = "float32",
    labels: Annotated[Optional[Path], typer.Option(help="Classifier label names, one a line (fine-tuned checkpoints).")] = None,
    backbone: Annotated[Optional[Path], typer.Option(
        help="The pre-trained checkpoint that feeds the secondary-structure model (MixedFold), same variant.")] = None,
    head: Annotated[Optional[str], typer.Option(
        metavar="KIND", help="Convert as this kind where the tensor names cannot tell: masked-lm, sequence-classifier, "
                             "token-classifier or encoder (default: from the config, else the tensor names).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty OUT_DIR.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the Paddle <-> PyTorch parity check.")] = False,
    verify_only: Annotated[bool, typer.Option("--verify-only", help="Only verify an existing OUT_DIR against CHECKPOINT.")] = False,
    probe: Annotated[Optional[Path], typer.Option(help="Extra probe sequences: FASTA or one sequence a line.")] = None,
    atol: Annotated[Optional[float], typer.Option(help="Max |diff| allowed between Paddle and the float32 mapping (default 1e-4, every dtype).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the verification report (JSON) here.")] = None,
    push_to_hub: RepoIdOpt = None,
    hub: HubOptions = HubOptions(),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Convert an RNAErnie Paddle checkpoint into a Hugging Face transformers folder, then verify parity.

    CHECKPOINT may be the official release's folder: every checkpoint under it is converted into the same
    relative folder under OUT_DIR and verified, and a table says what was converted, left out and why.

    Exit codes: 0 success, 1 parity failure, 2 bad input or usage.
    """
    say = (lambda message: None) if quiet else err

    def body() -> int:
        if verify_only and no_verify:
            raise ConversionError("--verify-only and --no-verify contradict each other; pass one of them.")
        if checkpoint.is_dir():  # the official release's folder: every checkpoint under it
            return _convert_release(
                checkpoint, out_dir, say, {"--labels": labels, "--head": head, "--verify-only": verify_only,
                                           "--push-to-hub": push_to_hub, "--backbone": backbone},
                config=config, vocab=vocab, dtype=dtype, force=force, verify=not no_verify, probe=probe, atol=atol,
                report=report)
        if not no_verify:
            from convert.verify import require_verify_dependencies

            require_verify_dependencies()  # before writing anything
        if push_to_hub:
            from convert.hub import check_repo_id

            check_repo_id(push_to_hub)  # a push that cannot start is refused before anything is written
            hub.limits()
        else:
            end_run_at_commit()  # writing OUT_DIR is the last thing this run does
        parity_failure = None
        try:
            if verify_only:
                from convert.verify import verify_conversion

                verify_conversion(checkpoint, out_dir, config=config, probe=probe, atol=atol, report=report, say=say,
                                  backbone=backbone)
            else:
                from convert.pipeline import Verify, convert_and_verify

                convert_and_verify(checkpoint, out_dir, config=config, vocab=vocab, dtype=dtype, force=force,
                                   labels=labels, head=head, backbone=backbone, say=say,
                                   verify=None if no_verify else Verify(probe, atol, report))
        except ParityError as exc:
            parity_failure = exc  # OUT_DIR is written, for inspection; exit 1, and no push
        if parity_failure:
            raise parity_failure
        if push_to_hub:
            hub.push(out_dir, push_to_hub, say=say)
        return EXIT_OK

    run_guarded(debug, body)


def _convert_release(release_dir: Path, out_dir: Path, say, one_checkpoint_options: dict, **options) -> int:
    given = [name for name, value in one_checkpoint_options.items() if value]
    if given:
        raise ConversionError(f"{given[0]} applies to one checkpoint, not to a release folder; pass that checkpoint's "
                     f"model_state.pdparams instead of {release_dir}.")
    from convert.release import convert_release

    convert_release(release_dir, out_dir, say=say, show=print, **options)  # raises unless every one passed
    return EXIT_OK


def main() -> None:
    command_line_process()
    run_command_line(app)  # SIGTERM cleans up and exits 143, as Ctrl-C exits 130


if __name__ == "__main__":
    main()

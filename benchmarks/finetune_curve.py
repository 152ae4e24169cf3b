"""The fine-tuning curve in the README: the tiny fixture model learning the 24 MFE structures.

    python benchmarks/finetune_curve.py [--epochs 40] [--out benchmarks/results/finetune_curve]

Converts fixtures/tiny-mlm-2.4 (a random 2-layer model), then runs `rnaernie train --task contact`
through its Python API on fixtures/structures/nrc-mfe-24.dbn with `--eval` on the same file (so the
F1 is the training-set F1, folded and scored as `rnaernie fold` + `rnaernie score` do), batches of
4, learning rate 5e-3, seed 0, once per head. Writes OUT.json (every epoch's figures) and OUT.png
(needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STRUCTURES = ROOT / "fixtures" / "structures" / "nrc-mfe-24.dbn"
HEADS = ("hidden", "attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_curve")
    args = parser.parse_args()

    import torch

    from convert.pipeline import convert_checkpoint
    from rnaernie.training import TrainSettings, train

    torch.set_num_threads(1)
    curves = {}
    with tempfile.TemporaryDirectory(prefix="rnaernie-curve-") as scratch:
        base = Path(scratch) / "tiny"
        convert_checkpoint(ROOT / "fixtures" / "tiny-mlm-2.4" / "model_state.pdparams", base)
        for head in HEADS:
            settings = TrainSettings(model=str(base), data=str(STRUCTURES), output=str(Path(scratch) / head),
                                     task="contact", head=head, epochs=args.epochs, batch_size=4, learning_rate=5e-3,
                                     eval_data=str(STRUCTURES), device="cpu", quiet=True)
            result = train(settings)
            curves[head] = {"seconds": round(result.seconds, 1), "steps": result.steps, "history": result.history}
            last = result.history[-1]
            print(f"{head}: F1 {result.history[0]['eval_f1']:.3f} -> {last['eval_f1']:.3f} "
                  f"(best {max(e['eval_f1'] for e in result.history):.3f}) in {result.steps} steps, "
                  f"{result.seconds:.1f} s", file=sys.stderr)
    report = {"data": str(STRUCTURES.relative_to(ROOT)), "model": "fixtures/tiny-mlm-2.4 (random, 2 layers, hidden 64)",
              "settings": {"epochs": args.epochs, "batch_size": 4, "learning_rate": 5e-3, "positive_weight": 10.0,
                           "seed": 0},
              "date": time.strftime("%Y-%m-%d %H:%M"), "curves": curves}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out.with_suffix(".png"))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (f1_axis, loss_axis) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for head, curve in report["curves"].items():
        history = curve["history"]
        f1_axis.plot([e["epoch"] for e in history], [e["eval_f1"] for e in history], marker=".", label=f"{head} head")
        trained = [e for e in history if "loss" in e]
        loss_axis.plot([e["epoch"] for e in trained], [e["loss"] for e in trained], marker=".", label=f"{head} head")
    f1_axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    f1_axis.set(xlabel="epoch", ylabel="training-set F1 (fold + score)", ylim=(0, 1),
                title="24 MFE structures, tiny model")
    loss_axis.set(xlabel="epoch", ylabel="training loss (weighted BCE)", yscale="log", title="loss")
    for axis in (f1_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

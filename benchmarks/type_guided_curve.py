"""The curve in docs/type-guided-training.md: plain vs type-guided fine-tuning of the tiny classifier on nRC records.

    python benchmarks/type_guided_curve.py [--epochs 12] [--out benchmarks/results/type_guided_curve.json]
                                           [--figure docs/figures/type-guided-curve.png]

Converts fixtures/tiny-seqcls-13 (a random 2-layer 13-class classifier) and fixtures/tiny-mlm-2.4
(the indicator), takes the 3 shortest records of each nRC class from the official test records kept
in fixtures/golden/type-guided-training.npz (39 records, written in the official label order so that
both runs keep the classifier's id2label), and trains twice through `rnaernie.training.train` with
the same settings (batches of 8, learning rate 5e-3, seed 0), evaluating on the same records before
training and after every epoch: once plain (`--task sequence`), once type-guided (`--type-guided`,
top 3). Writes the JSON (every epoch's figures) and the figure (needs matplotlib). The figures are
training-set figures of a random tiny model: they show that both objectives train, not how well a
real model generalises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOLDEN = ROOT / "fixtures" / "golden" / "type-guided-training.npz"
PER_CLASS = 3
SETTINGS = {"batch_size": 8, "learning_rate": 5e-3, "seed": 0}


def write_records(path: Path) -> int:
    """The PER_CLASS shortest records of each class, as '>id label' FASTA in the official label order."""
    import numpy as np

    golden = np.load(GOLDEN)
    chosen = []
    for label_id in range(int(golden["labels"].max()) + 1):
        rows = [i for i in range(len(golden["labels"])) if golden["labels"][i] == label_id]
        chosen += sorted(rows, key=lambda i: len(golden["sequences"][i]))[:PER_CLASS]
    path.write_text("".join(f">{golden['record_ids'][i]} {golden['label_names'][i]}\n{golden['sequences'][i]}\n"
                            for i in chosen))
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "type_guided_curve.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "type-guided-curve.png")
    args = parser.parse_args()

    import torch

    from convert.pipeline import convert_checkpoint
    from rnaernie.training import TrainSettings, train

    torch.set_num_threads(1)
    curves = {}
    with tempfile.TemporaryDirectory(prefix="rnaernie-type-curve-") as scratch:
        scratch = Path(scratch)
        classifier, indicator = scratch / "tiny-seqcls-13", scratch / "tiny-mlm-2.4"
        convert_checkpoint(ROOT / "fixtures" / "tiny-seqcls-13" / "model_state.pdparams", classifier)
        convert_checkpoint(ROOT / "fixtures" / "tiny-mlm-2.4" / "model_state.pdparams", indicator)
        data = scratch / "records.fa"
        count = write_records(data)
        for name, guided in (("plain", None), ("type-guided", str(indicator))):
            settings = TrainSettings(model=str(classifier), data=str(data), output=str(scratch / name),
                                     task="sequence", epochs=args.epochs, eval_data=str(data), device="cpu",
                                     quiet=True, type_guided=guided, **SETTINGS)
            started = time.perf_counter()
            result = train(settings)
            history = [{"epoch": e["epoch"], "loss": e["loss" if guided else "eval_loss"],
                        "accuracy": e["accuracy" if guided else "eval_accuracy"]} for e in result.history]
            curves[name] = {"seconds": round(time.perf_counter() - started, 1), "steps": result.steps,
                            "history": history}
            print(f"{name}: loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}, accuracy "
                  f"{history[0]['accuracy']:.3f} -> {history[-1]['accuracy']:.3f}", file=sys.stderr)
    report = {"data": f"{count} nRC test records ({PER_CLASS} shortest per class) from {GOLDEN.relative_to(ROOT)}",
              "model": "fixtures/tiny-seqcls-13 (random, 2 layers, hidden 64); indicator fixtures/tiny-mlm-2.4",
              "settings": {"epochs": args.epochs, **SETTINGS, "top_k": 3, "threads": 1},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average": [round(x, 2) for x in os.getloadavg()], "curves": curves}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.figure)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for name, curve in report["curves"].items():
        epochs = [e["epoch"] for e in curve["history"]]
        loss_axis.plot(epochs, [e["loss"] for e in curve["history"]], marker=".", label=name)
        accuracy_axis.plot(epochs, [e["accuracy"] for e in curve["history"]], marker=".", label=name)
    loss_axis.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss on the 39 records")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy on the 39 records")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

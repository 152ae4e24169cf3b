"""Benchmark `rnaernie interact` against the official Paddle code on the 400 MirTarRAW sample pairs, full size.

    python benchmarks/bench_interact.py [--runs 3] [--pairs mirtar_sample.csv] [--pnlp-venv /work/pnlp-venv]
                                        [--official /work/official-rnaernie] [--out benchmarks/results/interact.json]

Measured in the same run, each run a separate process (peak RSS from wait4), the two alternating:
  official  the official code in the golden environment (paddle 2.6.2 + PaddleNLP 2.8.1, see
            fixtures/golden/make_golden.py): `ErnieModel` + `ErnieRRInter` built as run_rr_inter.py
            builds them, `set_state_dict(paddle.load(...))`, `convert_instance_to_rr` and
            `RRDataCollator`, batches of 256, eval mode, `paddle.no_grad`, CPU; logits saved;
  ours      the whole command `rnaernie interact MODEL PAIRS -o scores.csv` (default options), on the
            same checkpoint converted once with rnaernie-convert.
Both are whole processes (start-up, loading and scoring); each also reports its scoring time alone.
The logits of the two are compared (max abs difference). The checkpoint is fixtures/generate.py's
full-size interaction model (seed 1919, the one the goldens use). The machine is shared: the load
average is recorded before and after.
Target: ours <= 0.4 x official (median wall time), logits within 1e-4.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, ROOT, _cpu_model  # noqa: E402
from bench_embed import run_measured  # noqa: E402

PAIRS = Path("/work/shared/data/mirtar_sample.csv")
SEED = 1919
TARGET_RATIO = 0.4
TOLERANCE = 1e-4


def child_official(official: str, pdparams: str, config_dir: str, pairs: str, out: str) -> dict:
    """The official evaluation path (run in the golden environment)."""
    started = time.perf_counter()
    import aiohttp  # noqa: F401  (these three before paddle, or paddle fails to import: see make_golden.py)
    import datasets  # noqa: F401
    import scipy.linalg  # noqa: F401
    import csv

    import numpy as np
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieModel

    sys.path.insert(0, official)
    import rna_rna_interaction as rr
    from tokenizer_nuc import NUCTokenizer

    paddle.set_device("cpu")
    body = json.loads((Path(config_dir) / "model_config.json").read_text())
    config = {k: v for k, v in body["init_args"][0].items() if k != "init_class"}
    extractor = ErnieModel(ErnieConfig(**config))
    model = rr.ErnieRRInter(extractor=extractor, hidden_states_size=config["hidden_size"], proj_size=64,
                            with_pretrain=True, fix_pretrain=False)
    model.set_state_dict(paddle.load(pdparams))
    model.eval()
    tokenizer = NUCTokenizer(k_mer=1, vocab_file=str(ROOT / "convert" / "data" / "vocab_1MER.txt"))
    loaded = time.perf_counter()
    with open(pairs, newline="") as handle:
        rows = [{**row, "label": int(row["label"])} for row in csv.DictReader(handle)]
    instances = [rr.convert_instance_to_rr(row, tokenizer, [26, 40]) for row in rows]
    collate = rr.RRDataCollator(max_seq_len=66)
    logits = []
    with paddle.no_grad():
        for start in range(0, len(instances), 256):
            batch = collate(instances[start:start + 256])
            output, _ = model(paddle.to_tensor(batch["tokens"]), paddle.to_tensor(batch["input_ids"]))
            logits.append(output.numpy())
    np.save(out, np.concatenate(logits))
    return {"load_seconds": loaded - started, "score_seconds": time.perf_counter() - loaded}


def ours_command(model: Path, pairs: Path, out: Path) -> list[str]:
    script = Path(sys.executable).parent / "rnaernie"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rnaernie.cli"]
    return [*command, "interact", str(model), str(pairs), "-o", str(out)]


def checkpoint() -> Path:
    folder = CACHE / "rrinter-full"
    path = folder / "model_state.pdparams"
    if not path.exists():
        print(f"generating the full-size interaction checkpoint in {folder} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), str(folder), "--preset", "full",
                        "--head", "rrinter", "--seed", str(SEED)], check=True, stdout=subprocess.DEVNULL)
    return path


def converted(pdparams: Path) -> Path:
    folder = CACHE / "rrinter-full-converted"
    if not (folder / "interaction_head.safetensors").exists():
        print(f"converting {pdparams} into {folder} ...", file=sys.stderr)
        run_measured([sys.executable, "-m", "convert.cli", str(pdparams), str(folder), "--no-verify", "--force",
                      "-q"])
    return folder


def read_scores(path: Path):
    import csv

    import numpy as np

    with open(path, newline="") as handle:
        return np.array([[float(r["logit_0"]), float(r["logit_1"])] for r in csv.DictReader(handle)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--pnlp-venv", type=Path, default=Path(os.environ.get("PNLP_VENV", "/work/pnlp-venv")))
    parser.add_argument("--official", type=Path,
                        default=Path(os.environ.get("OFFICIAL_RNAERNIE", "/work/official-rnaernie")))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "interact.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_official(*args.child[1:])))
        return

    pdparams = checkpoint()
    model = converted(pdparams)
    load_before = os.getloadavg()
    official, ours, differences = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for run in range(args.runs):
            logits = scratch / f"official-{run}.npy"
            command = [str(args.pnlp_venv / "bin" / "python"), str(Path(__file__).resolve()), "--child", "official",
                       str(args.official), str(pdparams), str(pdparams.parent / "pretrained"), str(args.pairs),
                       str(logits)]
            seconds, rss, stdout = run_measured(command)
            official.append({"seconds": seconds, "peak_rss_mb": rss, **json.loads(stdout.strip().splitlines()[-1])})
            scores = scratch / f"ours-{run}.csv"
            seconds, rss, _ = run_measured(ours_command(model, args.pairs, scores))
            ours.append({"seconds": seconds, "peak_rss_mb": rss})
            import numpy as np

            differences.append(float(np.abs(read_scores(scores) - np.load(logits)).max()))
            print(f"run {run + 1}: official {official[-1]['seconds']:.1f} s, ours {ours[-1]['seconds']:.1f} s, "
                  f"max |logit diff| {differences[-1]:.2e}", file=sys.stderr)
    load_after = os.getloadavg()

    def summary(runs: list[dict]) -> dict:
        return {"median_seconds": statistics.median(r["seconds"] for r in runs),
                "min_seconds": min(r["seconds"] for r in runs), "max_seconds": max(r["seconds"] for r in runs),
                "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs), "runs": runs}

    report = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": load_after,
                    "note": "shared machine: other agents' jobs run at the same time"},
        "pairs": sum(1 for line in args.pairs.read_text().splitlines()[1:] if line.strip()),
        "checkpoint": f"fixtures/generate.py --preset full --head rrinter --seed {SEED}",
        "official": summary(official), "ours": summary(ours),
        "max_abs_logit_diff": max(differences), "tolerance": TOLERANCE, "target_ratio": TARGET_RATIO,
    }
    report["ratio"] = report["ours"]["median_seconds"] / report["official"]["median_seconds"]
    report["met"] = report["ratio"] <= TARGET_RATIO and report["max_abs_logit_diff"] <= TOLERANCE
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"official {report['official']['median_seconds']:.1f} s ({report['official']['median_peak_rss_mb']:.0f} "
          f"MiB), ours {report['ours']['median_seconds']:.1f} s ({report['ours']['median_peak_rss_mb']:.0f} MiB): "
          f"ratio {report['ratio']:.2f} (target <= {TARGET_RATIO}), "
          f"max |logit diff| {report['max_abs_logit_diff']:.1e}; "
          f"load {load_before[0]:.1f} -> {load_after[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()

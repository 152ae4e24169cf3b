"""Benchmark `rnaernie embed`: throughput against the obvious loop, peak RSS, half-precision error.

    python benchmarks/bench_embed.py [--runs 3] [--records 100] [--parts throughput memory precision]
                                     [--out benchmarks/results/embed.json]

Measured, every run a separate process (this script imports nothing heavy; peak RSS from wait4):
  throughput   the first N real records of nrc_sample.fa on the full-size (86M) generated checkpoint,
               converted once: (a) the obvious loop of issue 12 (stock transformers AutoModel, batches
               of 32 in file order padded to the longest, attention mask, no_grad, [CLS] of the last
               layer), (b) rnaernie's Embedder with the same output, (c) the whole `rnaernie embed`
               command. (a) and (b) alternate within each round and report model-load and embedding
               time apart; their vectors are compared (max abs difference) in the same run.
  memory       `rnaernie embed` on the small fixture model (fixtures/tiny-mlm-2.4) at two input sizes
               (real records repeated), pooled to .npz and per-nucleotide to .parquet: peak RSS.
  precision    float16 and bfloat16 against float32 on the full-size model: max abs difference of the
               [CLS] vectors and their smallest cosine similarity (the figures the README quotes).
Target: (b) embedding time <= 0.5 x (a)'s, identical vectors (max abs diff <= 2e-5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, ROOT, _cpu_model, checkpoint  # noqa: E402

DATA = Path("/work/shared/data/nrc_sample.fa")
TARGET_RATIO = 0.5
MEMORY_SIZES = (1_000, 10_000)
PARTS = ("throughput", "memory", "precision")


# -- children: each runs in its own process and prints one JSON line -----------------------------

def child_obvious_loop(model: str, fasta: str, out: str) -> dict:
    """Issue 12's baseline, written as a user would write it with stock transformers."""
    started = time.perf_counter()
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    network = AutoModel.from_pretrained(model).eval()
    loaded = time.perf_counter()
    sequences = [sequence for _, sequence in read_fasta(fasta)]
    vectors = []
    with torch.no_grad():
        for start in range(0, len(sequences), 32):
            batch = tokenizer(sequences[start:start + 32], padding=True, truncation=True, max_length=512,
                              return_tensors="pt")
            vectors.append(network(**batch).last_hidden_state[:, 0].numpy())
    np.save(out, np.concatenate(vectors))
    return {"load_seconds": loaded - started, "embed_seconds": time.perf_counter() - loaded}


def child_rnaernie(model: str, fasta: str, out: str, dtype: str = "float32") -> dict:
    started = time.perf_counter()
    import numpy as np

    from rnaernie.embedding import Embedder

    embedder = Embedder(model, pooling="cls", device="cpu", dtype=dtype)
    loaded = time.perf_counter()
    vectors = np.stack([vector for _, vector in embedder.iter_embeddings(fasta)])
    np.save(out, vectors)
    return {"load_seconds": loaded - started, "embed_seconds": time.perf_counter() - loaded}


def read_fasta(path: str) -> list[tuple[str, str]]:
    records: list[tuple[str, str]] = []
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            records.append((line[1:].split()[0], ""))
        elif records:
            records[-1] = (records[-1][0], records[-1][1] + line.strip())
    return records


# -- the parent ------------------------------------------------------------------------------------

def run_measured(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of that process alone, stdout) of one child process."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryFile() as captured, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=captured, stderr=errors, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read().decode()[-2000:]}")
        captured.seek(0)
        return seconds, usage.ru_maxrss / 1024, captured.read().decode()


def child(kind: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, *args]


def converted(pdparams: Path, name: str) -> Path:
    folder = CACHE / f"{name}-converted"
    if not (folder / "model.safetensors").exists():
        print(f"converting {pdparams} into {folder} ...", file=sys.stderr)
        run_measured([sys.executable, "-m", "convert.cli", str(pdparams), str(folder), "--no-verify", "--force", "-q"])
    return folder


def max_abs_diff(a: Path, b: Path) -> float:
    import numpy as np

    return float(np.max(np.abs(np.load(a) - np.load(b))))


def min_cosine(a: Path, b: Path) -> float:
    import numpy as np

    x, y = np.load(a).astype(np.float64), np.load(b).astype(np.float64)
    return float(np.min(np.sum(x * y, axis=1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)))


def throughput(work: Path, records: int, runs: int) -> dict:
    model = converted(checkpoint("full (86M)"), "full")
    fasta = work / "records.fa"
    chosen = read_fasta(str(DATA))[:records]
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in chosen))
    timings: dict[str, list[dict]] = {"obvious loop": [], "rnaernie Embedder": [], "rnaernie embed (whole command)": []}
    for _ in range(runs):  # alternate, so that a noisy neighbour hurts both sides alike
        for name, command in (("obvious loop", child("obvious", str(model), str(fasta), str(work / "obvious.npy"))),
                              ("rnaernie Embedder", child("rnaernie", str(model), str(fasta), str(work / "ours.npy")))):
            seconds, rss, stdout = run_measured(command)
            timings[name].append({**json.loads(stdout), "wall_seconds": seconds, "peak_rss_mb": rss})
        seconds, rss, _ = run_measured([sys.executable, "-m", "rnaernie.cli", "embed", str(model), str(fasta), "-o",
                                        str(work / "command.npy"), "--device", "cpu", "-q"])
        timings["rnaernie embed (whole command)"].append({"wall_seconds": seconds, "peak_rss_mb": rss})
    rows = {name: {key: statistics.median(run[key] for run in values) for key in values[0]}
            for name, values in timings.items()}
    ratio = rows["rnaernie Embedder"]["embed_seconds"] / rows["obvious loop"]["embed_seconds"]
    return {"records": records, "nucleotides": sum(len(s) for _, s in chosen),
            "over_510_nt": sum(len(s) > 510 for _, s in chosen), "runs": runs, "medians": rows,
            "embed_time_ratio": ratio,
            "max_abs_diff_vs_obvious_loop": max_abs_diff(work / "obvious.npy", work / "ours.npy"),
            "max_abs_diff_command_vs_api": max_abs_diff(work / "command.npy", work / "ours.npy")}


def memory(work: Path) -> dict:
    model = converted(ROOT / "fixtures" / "tiny-mlm-2.4" / "model_state.pdparams", "tiny-mlm-2.4")
    records = read_fasta(str(DATA))
    rows = {}
    for size in MEMORY_SIZES:
        fasta = work / f"records-{size}.fa"
        with open(fasta, "w") as f:
            for n in range(size):
                record_id, sequence = records[n % len(records)]
                f.write(f">{record_id}.{n}\n{sequence}\n")
        for label, extra in (("cls -> .npz", ["-o", str(work / "pooled.npz")]),
                             ("none -> .parquet", ["-o", str(work / "tokens.parquet"), "--pooling", "none"])):
            seconds, rss, _ = run_measured([sys.executable, "-m", "rnaernie.cli", "embed", str(model), str(fasta),
                                            *extra, "--device", "cpu", "-q"])
            rows[f"{label}, {size:,} records"] = {"wall_seconds": seconds, "peak_rss_mb": rss,
                                                   "output_mb": os.path.getsize(extra[1]) / 2**20}
        fasta.unlink()
    return rows


def precision(work: Path, records: int = 20) -> dict:
    model = converted(checkpoint("full (86M)"), "full")
    fasta = work / "precision.fa"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in read_fasta(str(DATA))[:records]))
    outputs = {}
    for dtype in ("float32", "float16", "bfloat16"):
        outputs[dtype] = work / f"{dtype}.npy"
        run_measured(child("rnaernie", str(model), str(fasta), str(outputs[dtype]), dtype))
    return {dtype: {"records": records, "max_abs_diff": max_abs_diff(outputs["float32"], outputs[dtype]),
                    "min_cosine": min_cosine(outputs["float32"], outputs[dtype])}
            for dtype in ("float16", "bfloat16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embed.json")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_obvious_loop(*rest) if kind == "obvious" else child_rnaernie(*rest)
        print(json.dumps(result))
        return

    # Parts not run keep their figures from the previous file; each part records when and how loaded.
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["machine"] = {"cpus": len(os.sched_getaffinity(0)), "cpu": _cpu_model()}
    measure = {"throughput": lambda work: throughput(work, args.records, args.runs), "memory": memory,
               "precision": precision}
    with tempfile.TemporaryDirectory(prefix="rnaernie-bench-embed-") as scratch:
        for part in args.parts:
            load = os.getloadavg()[0]
            report[part] = {**measure[part](Path(scratch)), "date": time.strftime("%Y-%m-%d %H:%M"),
                            "load_average_at_start": load}
    if "throughput" in report:
        t = report["throughput"]
        report["targets_met"] = {"embed_time_ratio <= 0.5": t["embed_time_ratio"] <= TARGET_RATIO,
                                 "identical vectors (<= 2e-5)": t["max_abs_diff_vs_obvious_loop"] <= 2e-5}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))


def render(report: dict) -> str:
    lines = [f"{report['machine']['cpus']} CPUs ({report['machine']['cpu']})"]
    if "throughput" in report:
        t = report["throughput"]
        lines += ["", f"{t['records']} real records ({t['nucleotides']:,} nt, {t['over_510_nt']} over 510), full-size "
                      f"model, median of {t['runs']} runs, {t['date']}, load average {t['load_average_at_start']:.1f}", "",
                  "| run | load model | embed | whole process | peak RSS |", "|---|---|---|---|---|"]
        for name, row in t["medians"].items():
            load = f"{row['load_seconds']:.1f} s" if "load_seconds" in row else "-"
            embed = f"{row['embed_seconds']:.1f} s" if "embed_seconds" in row else "-"
            lines.append(f"| {name} | {load} | {embed} | {row['wall_seconds']:.1f} s | {row['peak_rss_mb']:.0f} MiB |")
        lines += ["", f"embedding time ratio (Embedder / obvious loop): {t['embed_time_ratio']:.2f}; "
                      f"max abs difference of the vectors: {t['max_abs_diff_vs_obvious_loop']:.1e}",
                  "targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets_met"].items())]
    if "memory" in report:
        lines += ["", f"memory: {report['memory']['date']}, load average {report['memory']['load_average_at_start']:.1f}",
                  "", "| small model, memory | wall | peak RSS | output |", "|---|---|---|---|"]
        for name, row in report["memory"].items():
            if not isinstance(row, dict):
                continue
            lines.append(f"| {name} | {row['wall_seconds']:.1f} s | {row['peak_rss_mb']:.0f} MiB | "
                         f"{row['output_mb']:.1f} MiB |")
    if "precision" in report:
        lines += ["", "| compute dtype | max abs diff vs float32 ([CLS], full size) | min cosine |", "|---|---|---|"]
        for dtype, row in report["precision"].items():
            if not isinstance(row, dict):
                continue
            lines.append(f"| {dtype} | {row['max_abs_diff']:.1e} | {row['min_cosine']:.6f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark the structure model's folding engine against mxfold2's compiled engine on the same scores.

    /work/mxfold2-venv/bin/python benchmarks/bench_engine.py [--mxfold2 DIR] [--repeats 5] [--out FILE]

Runs in the venv where mxfold2's engine is built (`fixtures/golden/make_engine_golden.py` says how),
with numba installed and this repository importable. For 100, 200 and 400 nt (random A/C/G/U, seeded),
both engines fold the same float32 tensors: Turner-2004 (`fixtures/golden/engine-turner2004.npz`) plus
`fixtures.engine_scores.random_positional(seed, L, 0.5)`, with the official options. Each engine folds
each sequence `--repeats` times after one warm-up; the median CPU time (`time.process_time`) is
reported, with the wall time. The structures and scores are compared too.

numba's compile time is measured apart, in two child processes sharing a fresh `NUMBA_CACHE_DIR`: the
first compiles and caches (cold), the second loads the cache (warm); each reports the time from
before the import to the end of its first fold of a 50-nt sequence.

Load averages (`os.getloadavg`) are recorded before and after; quote figures only from runs whose
load stays below 2 (the machine's core count), else call them loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fixtures.engine_scores import random_positional  # noqa: E402

LENGTHS = (100, 200, 400)
SCALE = 0.5
TARGET_RATIO = 2.0
DEFAULT_MXFOLD2 = "/work/mxfold2-build/mxfold2-0.1.1/mxfold2"
FIRST_FOLD = """
import time; start = time.perf_counter()
import numpy as np
from fixtures.engine_scores import random_positional
from rnaernie.mixedfold_engine import fold
with np.load("fixtures/golden/engine-turner2004.npz") as data:
    turner = {key: data[key] for key in data.files}
fold("GGGGAAACCCCAUAUGGGCGCAAGCCCAUAUAGGGGAAACCCCAUAUGGG", turner, random_positional(0, 50))
print(time.perf_counter() - start)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mxfold2", default=os.environ.get("MXFOLD2_DIR", DEFAULT_MXFOLD2))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine.json")
    args = parser.parse_args()
    sys.path.insert(0, args.mxfold2)
    import interface  # mxfold2's engine

    load_before = os.getloadavg()
    compile_seconds = compile_times()
    from rnaernie.mixedfold_engine import fold

    with np.load(ROOT / "fixtures" / "golden" / "engine-turner2004.npz") as data:
        turner = {key: data[key] for key in data.files}
    results = {}
    for length in LENGTHS:
        sequence = "".join(np.random.default_rng(length).choice(list("ACGU"), length))
        positional = random_positional(length, length, SCALE)
        param = {"turner": turner, "positional": positional}
        counted = {group: {**scores, **{"count" + key[5:]: np.zeros_like(value) for key, value in scores.items()}}
                   for group, scores in param.items()}
        theirs = timed(lambda: interface.predict_mxfold(sequence, counted), args.repeats)
        ours = timed(lambda: fold(sequence, turner, positional), args.repeats)
        score, structure, _ = interface.predict_mxfold(sequence, counted)
        result = fold(sequence, turner, positional)
        results[str(length)] = {
            "mxfold2": theirs, "ours": ours,
            "ratio_cpu": ours["cpu_median"] / theirs["cpu_median"],
            "same_structure": result.structure == structure, "same_score": float(np.float32(result.score)) == score,
        }
        print(f"{length} nt: mxfold2 {theirs['cpu_median']:.3f} s, ours {ours['cpu_median']:.3f} s "
              f"(x{results[str(length)]['ratio_cpu']:.2f}), same structure {result.structure == structure}")
    load_after = os.getloadavg()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "load_average_before": load_before, "load_average_after": load_after,
        "loaded": max(load_before[0], load_after[0]) >= 2,
        "repeats": args.repeats, "target_ratio": TARGET_RATIO,
        "compile_seconds": compile_seconds,
        "lengths": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"compile: cold {compile_seconds['cold']:.1f} s, cached {compile_seconds['cached']:.1f} s; "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}; wrote {args.out}")
    return 0


def timed(call, repeats: int) -> dict:
    call()  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return {"cpu_median": statistics.median(cpu), "wall_median": statistics.median(wall), "cpu_all": cpu}


def compile_times() -> dict:
    """Seconds to the end of a first fold: with an empty numba cache (compiling), then with that cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        seconds = [float(subprocess.run([sys.executable, "-c", FIRST_FOLD], cwd=ROOT, env=env, check=True,
                                        capture_output=True, text=True).stdout) for _ in range(2)]
    return {"cold": seconds[0], "cached": seconds[1]}


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark `rnaernie fold` with a full-size structure model, end to end, on 100 real nRC records.

    python benchmarks/bench_fold_structure.py [--runs 3] [--records 100] [--out benchmarks/results/structure_fold.json]

The structure model is fixtures/generate.py's full-size MixedFold checkpoint (`--head mixedfold`, official
layout) with a full-size pre-trained checkpoint as its backbone, converted once with
`rnaernie-convert SSP --backbone MLM --no-verify` (the fold, not the verification, is measured here).
Input: the first N records of ../shared/data/nrc_sample.fa (their lengths are reported). Each run is the
whole command in its own process (start-up, loading the encoder, the network and the engine's numba
cache, folding, writing the .dbn): median wall time and peak RSS (wait4). One untimed run first fills
numba's cache, so the runs measure what every later run of an installed copy costs; the cold compile is
measured by benchmarks/bench_engine.py. The load average is sampled during the runs.
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
from bench import CACHE, LOAD_SEEN, ROOT, _cpu_model, checkpoint, measure  # noqa: E402

RECORDS = ROOT.parent / "shared" / "data" / "nrc_sample.fa"


def structure_checkpoint() -> Path:
    """The full-size MixedFold checkpoint, generated once into the benchmarks' cache."""
    path = CACHE / "mixedfold" / "model_state.pdparams"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), str(path.parent), "--preset", "full",
                        "--head", "mixedfold"], check=True, stdout=subprocess.DEVNULL)
    return path


def first_records(count: int, out: Path) -> list[int]:
    """Write the first `count` FASTA records of the nRC sample to `out`; return their lengths."""
    kept, lengths = [], []
    for line in RECORDS.read_text().splitlines():
        if line.startswith(">"):
            if len(lengths) == count:
                break
            lengths.append(0)
        else:
            lengths[-1] += len(line.strip())
        kept.append(line)
    out.write_text("\n".join(kept) + "\n")
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "structure_fold.json")
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="rnaernie-bench-fold-"))
    model = work / "structure-model"
    subprocess.run([str(bin_dir / "rnaernie-convert"), str(structure_checkpoint()), str(model),
                    "--backbone", str(checkpoint("full (86M)")), "--no-verify", "-q"], check=True)
    fasta = work / "records.fa"
    lengths = first_records(args.records, fasta)
    output = work / "folded.dbn"
    command = [str(bin_dir / "rnaernie"), "fold", str(model), str(fasta), "-o", str(output), "--quiet"]
    subprocess.run(command, check=True)  # fills numba's cache (untimed)
    load_at_start = os.getloadavg()
    runs = [measure(command) for _ in range(args.runs)]
    folded = output.read_text().count(">")
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "cpu": _cpu_model()},
        "records": len(lengths), "nucleotides": sum(lengths), "longest": max(lengths), "folded": folded,
        "median_seconds": statistics.median(r[0] for r in runs), "all_seconds": [r[0] for r in runs],
        "median_peak_rss_mb": statistics.median(r[1] for r in runs),
        "load_average": {"start": list(load_at_start), "end": list(os.getloadavg()),
                         "peak_while_running": max(LOAD_SEEN)},
        "loaded": max(LOAD_SEEN) >= len(os.sched_getaffinity(0)),  # not a figure to publish (docs/performance.md)
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"rnaernie fold, full-size structure model: {report['records']} records ({report['nucleotides']} nt, "
          f"longest {report['longest']}) in {report['median_seconds']:.1f} s (median of {args.runs}: "
          f"{', '.join(f'{s:.1f}' for s in report['all_seconds'])}), peak RSS {report['median_peak_rss_mb']:.0f} MiB; "
          f"load {load_at_start[0]:.2f} at the start, peak {report['load_average']['peak_while_running']:.2f}")


if __name__ == "__main__":
    main()

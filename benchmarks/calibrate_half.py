"""Measure the rounding error of faithful float16 / bfloat16 folders, to calibrate `STORED_RTOL`.

    python benchmarks/calibrate_half.py [--presets tiny,mid,full] [--seeds 0,1,2]

For each generated checkpoint (size preset x head x seed) and half dtype: convert, then verify;
the float32 mapping must pass at the float32 tolerance, and the folder as stored gives the
rounding error: max |diff| and max |diff| / max |reference| of every output. Prints the largest
of each per dtype and writes them all to benchmarks/results/half_precision.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.pipeline import convert_checkpoint  # noqa: E402
from convert.conversion import conversion_of_folder  # noqa: E402
from convert.verify import STORED_RTOL, builtin_probes, compare  # noqa: E402
from fixtures.generate import write_checkpoint  # noqa: E402

# "mid": between the tiny fixtures and the full-size model
SIZES = {"tiny": {}, "mid": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=6, intermediate_size=1536),
         "full": {}}
HEADS = ("mlm", "seqcls")


def measure(preset: str, head: str, seed: int, work: Path) -> list[dict]:
    base = "tiny" if preset == "mid" else preset
    checkpoint = write_checkpoint(work / f"{preset}-{head}-{seed}", preset=base, head=head, seed=seed, **SIZES[preset])
    rows = []
    for dtype in STORED_RTOL:
        out = work / f"{preset}-{head}-{seed}-{dtype}"
        convert_checkpoint(checkpoint, out, dtype=dtype)
        verification = compare(conversion_of_folder(checkpoint, out), out, probes=builtin_probes(), atol=None,
                               say=lambda m: None)
        assert verification["checks"]["parity"]["passed"], verification["failure"]
        stored = verification["checks"]["stored_parity"]["layers"]
        worst = max(stored, key=lambda row: row["max_rel"])
        rows.append({"preset": preset, "head": head, "seed": seed, "dtype": dtype,
                     "max_abs": max(row["max_abs"] for row in stored), "max_rel": worst["max_rel"],
                     "worst_output": worst["name"],
                     "float32_mapping_max_abs": max(row["max_abs"] for row in verification["layers"])})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,mid,full")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for preset in args.presets.split(","):
            for head in HEADS:
                for seed in map(int, args.seeds.split(",")):
                    rows += measure(preset, head, seed, Path(work))
    summary = {}
    for dtype in STORED_RTOL:
        mine = [row for row in rows if row["dtype"] == dtype]
        summary[dtype] = {"largest_max_rel": max(r["max_rel"] for r in mine),
                          "largest_max_abs": max(r["max_abs"] for r in mine), "runs": len(mine),
                          "rtol_in_use": STORED_RTOL[dtype]}
        print(f"{dtype}: largest max_rel {summary[dtype]['largest_max_rel']:.2e}, largest max_abs "
              f"{summary[dtype]['largest_max_abs']:.2e} over {len(mine)} folders; rtol in use {STORED_RTOL[dtype]:g}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "half_precision.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

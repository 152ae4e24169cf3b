"""Benchmark whole processes on full-size generated checkpoints: medians of wall time and peak RSS.

    python benchmarks/bench.py [--runs 5] [--verify-runs 3] [--no-scaling] [--out benchmarks/results/latest.json]

Measured, each as a separate process: wall time; peak RSS of its largest process (wait4) and the
peak of the summed RSS of all its processes (sampled every 20 ms; the verifier runs Paddle in a
child process):
  copy      `cp` of the checkpoint: the floor for anything that reads and writes it
  convert   `rnaernie-convert CHECKPOINT OUT --no-verify`
  verify    `rnaernie-convert CHECKPOINT OUT --verify-only` (Paddle + transformers, default probe set)
  default   `rnaernie-convert CHECKPOINT OUT` (convert, then verify), against two baselines of the same run:
  naive     benchmarks/naive_torch_convert.py: the obvious torch converter (safetensors.torch, tokenizers, BertConfig; no model)
  lean      benchmarks/naive_numpy_convert.py: the lean obvious converter (numpy transposes, safetensors)
  help      `rnaernie-convert --help`
  push      `rnaernie-push --help` and `rnaernie-push OUT ORG/NAME --dry-run` (start-up: no network)
Where the default command's time goes: the phases its verifier times (verification.json's `timings`),
medians over the default runs; the rest of the wall time is start-up, reading and writing.
The load average is sampled during every run; its peak is reported with the results.
Scaling: the same conversion on deeper (2x, 4x parameters) and wider (2x) synthetic checkpoints.
Checkpoints are generated once with fixtures/generate.py and cached in the temp directory.
This script imports nothing heavy, so that the peak RSS of each child is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "rnaernie-bench-cache"
SHAPES = {  # name -> fixtures/generate.py options on the full preset
    "full (86M)": [],
    "deep 2x (24 layers)": ["--layers", "24"],
    "deep 4x (48 layers)": ["--layers", "48"],
    "wide 2x (hidden 1088)": ["--hidden", "1088", "--heads", "16"],
}
TARGETS = {"convert_seconds": 1.0, "convert_rss_over_size": 1.2, "help_seconds": 0.3, "verify_seconds": 15.0,
           "default_over_naive": 2.0, "default_over_lean": 2.0, "default_peak_tree_mb": 1024}


def checkpoint(name: str) -> Path:
    folder = CACHE / name.split(" (")[0].replace(" ", "-")
    path = folder / "model_state.pdparams"
    if not path.exists():
        # in a child process: this process must stay small, because a child's peak RSS starts
        # from its parent's size at fork (Linux carries it through exec)
        print(f"generating {name} checkpoint in {folder} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), str(folder), "--preset", "full",
                        "--seed", "11", *SHAPES[name]], check=True, stdout=subprocess.DEVNULL)
    return path


def converter() -> list[str]:
    script = Path(sys.executable).parent / "rnaernie-convert"
    return [str(script)] if script.exists() else [sys.executable, "-m", "convert.cli"]


def pusher() -> list[str]:
    script = Path(sys.executable).parent / "rnaernie-push"
    return [str(script)] if script.exists() else [sys.executable, "-m", "convert.push_cli"]


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants right now (Linux /proc), in MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total / 1024


LOAD_SEEN: list[float] = []  # the 1-minute load average, sampled while the commands run


def measure(command: list[str], before=None, after=None) -> tuple[float, float, float]:
    """Run `command` once (`before()` ahead of it, `after()` once it succeeded); return (wall seconds, peak
    RSS of its largest process, peak summed RSS of its process tree sampled every 20 ms), memory in MiB."""
    if before:
        before()
    os.sync()  # start every run with no dirty pages left by the previous one (untimed)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tree_peak = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        tree_peak = max(tree_peak, _tree_rss_mb(process.pid))
        LOAD_SEEN.append(os.getloadavg()[0])
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    if after:
        after()
    # ru_maxrss of a reaped process covers it and its reaped descendants: the largest one, not their sum
    return seconds, usage.ru_maxrss / 1024, max(tree_peak, usage.ru_maxrss / 1024)


def series(command: list[str], runs: int, before=None, after=None) -> dict:
    results = [measure(command, before, after) for _ in range(runs)]
    times = [r[0] for r in results]
    return {"median_seconds": statistics.median(times), "min_seconds": min(times), "max_seconds": max(times),
            "median_peak_rss_mb": statistics.median(r[1] for r in results),
            "median_peak_tree_rss_mb": statistics.median(r[2] for r in results), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--verify-runs", type=int, default=3)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args()

    load_at_start = list(os.getloadavg())  # 1, 5 and 15 minutes: the machine may be shared
    work = Path(tempfile.mkdtemp(prefix="rnaernie-bench-"))
    out_dir, copy_target = work / "out", work / "copy.pdparams"
    clear_out = lambda: shutil.rmtree(out_dir, ignore_errors=True)  # noqa: E731
    rows: dict[str, dict] = {}
    try:
        full = checkpoint("full (86M)")
        size_mb = full.stat().st_size / 2**20
        subprocess.run(["cat", str(full)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        rows["copy (cp, the floor)"] = series(["cp", str(full), str(copy_target)], args.runs,
                                              lambda: copy_target.unlink(missing_ok=True))
        rows["convert --no-verify"] = series([*converter(), str(full), str(out_dir), "--no-verify", "-q"],
                                             args.runs, clear_out)
        rows["verify-only"] = series([*converter(), str(full), str(out_dir), "--verify-only", "-q"],
                                     args.verify_runs)
        # the default command (convert, then verify) against the obvious torch converter, same run
        phases: list[dict] = []  # each default run's verification timings

        def read_phases():
            verification = json.loads((out_dir / "verification.json").read_text())
            phases.append({**verification["timings"], "verification (all)": verification["seconds"]})

        rows["convert + verify (default)"] = series([*converter(), str(full), str(out_dir), "-q"],
                                                    args.verify_runs, clear_out, read_phases)
        naive_dir = work / "naive"  # its own folder: the push steps below read out_dir
        rows["naive torch converter (baseline)"] = series(
            [sys.executable, str(ROOT / "benchmarks" / "naive_torch_convert.py"), str(full), str(naive_dir)],
            args.verify_runs, lambda: shutil.rmtree(naive_dir, ignore_errors=True))
        lean_dir = work / "lean"
        rows["lean numpy converter (baseline)"] = series(
            [sys.executable, str(ROOT / "benchmarks" / "naive_numpy_convert.py"), str(full), str(lean_dir)],
            args.verify_runs, lambda: shutil.rmtree(lean_dir, ignore_errors=True))
        rows["--help"] = series([*converter(), "--help"], args.runs)
        rows["push --help"] = series([*pusher(), "--help"], args.runs)
        # the folder verified above; --allow-unverified keeps the step meaningful if verification failed
        rows["push --dry-run"] = series([*pusher(), str(out_dir), "lab/rnaernie", "--dry-run", "--allow-unverified"],
                                        args.runs)
        scaling = {}
        if not args.no_scaling:
            for name in SHAPES:
                path = checkpoint(name)
                result = series([*converter(), str(path), str(out_dir), "--no-verify", "-q"], max(3, args.runs // 2),
                                clear_out)
                result["checkpoint_mb"] = path.stat().st_size / 2**20
                scaling[name] = result
    finally:
        shutil.rmtree(work, ignore_errors=True)

    convert = rows["convert --no-verify"]
    default_seconds = rows["convert + verify (default)"]["median_seconds"]
    default_over_naive = default_seconds / rows["naive torch converter (baseline)"]["median_seconds"]
    default_over_lean = default_seconds / rows["lean numpy converter (baseline)"]["median_seconds"]
    verdicts = {
        "convert_seconds": convert["median_seconds"] <= TARGETS["convert_seconds"],
        "convert_rss_over_size": convert["median_peak_rss_mb"] / size_mb <= TARGETS["convert_rss_over_size"],
        "help_seconds": rows["--help"]["median_seconds"] <= TARGETS["help_seconds"],
        "verify_seconds": rows["verify-only"]["median_seconds"] <= TARGETS["verify_seconds"],
        "default_over_naive": default_over_naive <= TARGETS["default_over_naive"],
        "default_over_lean": default_over_lean <= TARGETS["default_over_lean"],
        "default_peak_tree_mb": rows["convert + verify (default)"]["median_peak_tree_rss_mb"]
        <= TARGETS["default_peak_tree_mb"],
    }
    report = {
        "machine": {"cpus": len(os.sched_getaffinity(0)), "cpu": _cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "checkpoint_mb": size_mb, "results": rows, "default_over_naive": default_over_naive,
        "default_over_lean": default_over_lean, "scaling": scaling, "targets": TARGETS, "targets_met": verdicts,
        "default_phases_seconds": {name: statistics.median(run[name] for run in phases) for name in phases[0]},
        "date": time.strftime("%Y-%m-%d"), "load_average": {"start": load_at_start, "end": list(os.getloadavg()),
                                                            "peak_while_running": max(LOAD_SEEN)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render_table(report))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loads(averages: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in averages)


def render_table(report: dict) -> str:
    size = report["checkpoint_mb"]
    machine = report["machine"]
    lines = [f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), Python {machine['python']}; "
             f"full-size checkpoint {size:.0f} MiB; {report['date']}; load average (1, 5, 15 min) "
             f"{_loads(report['load_average']['start'])} at the start, {_loads(report['load_average']['end'])} "
             f"at the end, 1-minute peak {report['load_average']['peak_while_running']:.2f} while running", "",
             "| step | median wall | min-max | median peak RSS (largest process) | median peak RSS (all processes) |",
             "|---|---|---|---|---|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['median_seconds']:.2f} s | {r['min_seconds']:.2f}-{r['max_seconds']:.2f} s | "
                     f"{r['median_peak_rss_mb']:.0f} MiB | {r['median_peak_tree_rss_mb']:.0f} MiB |")
    lines += ["", f"Default command / naive torch converter: {report['default_over_naive']:.2f}x; "
              f"/ lean numpy converter: {report['default_over_lean']:.2f}x"]
    default = report["results"]["convert + verify (default)"]["median_seconds"]
    lines += ["", "Where the default command's time goes (medians; the verifier's own timings):", "",
              "| phase | seconds | share of the default command |", "|---|---|---|"]
    for name, seconds in report["default_phases_seconds"].items():
        lines.append(f"| {name} | {seconds:.2f} s | {seconds / default:.0%} |")
    if report["scaling"]:
        lines += ["", "| convert (--no-verify) | checkpoint | median wall | median peak RSS | s per GiB |",
                  "|---|---|---|---|---|"]
        for name, r in report["scaling"].items():
            lines.append(f"| {name} | {r['checkpoint_mb']:.0f} MiB | {r['median_seconds']:.2f} s | "
                         f"{r['median_peak_rss_mb']:.0f} MiB | {r['median_seconds'] / (r['checkpoint_mb'] / 1024):.2f} |")
    met = ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets_met"].items())
    lines += ["", f"Targets ({', '.join(f'{k} <= {v}' for k, v in report['targets'].items())}): {met}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

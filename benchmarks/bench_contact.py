"""Benchmark the contact heads: the `hidden` head against the explicit outer-product head, full size, 510 nt.

    python benchmarks/bench_contact.py [--runs 3] [--out benchmarks/results/contact.json]

Both heads are the same `Linear(768 -> 1)` on `h_i * h_j` over the last hidden states of the full-size
(86M) generated checkpoint, converted once: (a) the obvious implementation builds the `[L, L, 768]`
product and applies the Linear to it; (b) `RnaErnieForContactPrediction` with `head="hidden"`
computes the same logits as a bilinear form. Input: the first 510 nt of the first real nRC record
longer than 510 nt. Each (head, operation) runs in its own process:
  predict      `pair_probabilities` (eval mode, no_grad), as `rnaernie fold` runs it;
  train step   forward with labels (the record's pairs are not needed: all-zero labels), backward, and
               one AdamW step, encoder included; the first step (which allocates gradients and the
               optimiser's state, the same for both heads) is a warm-up and is not measured.
For each run, the peak RSS is reset (Linux `/proc/self/clear_refs`) after the model and input are
ready, and `extra` = the peak during the operation minus the RSS before it: the memory the operation
itself needs. The children run with glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_):
freed blocks then go back to the system, so the RSS follows the memory in use (by default glibc keeps
freed activations of the warm-up run, and the next runs' peaks hide them). Medians over --runs runs
after one warm-up run; the cold first run's extra memory is reported too. The two heads' logits are
compared in the same run. Target: (b)'s extra memory to predict < 1/10 of (a)'s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, _cpu_model, checkpoint  # noqa: E402
from bench_embed import DATA, converted, read_fasta, run_measured  # noqa: E402

LENGTH = 510
TARGET_RATIO = 0.1
MMAP_THRESHOLD = 65536
CASES = [("explicit", "predict"), ("hidden", "predict"), ("explicit", "train step"), ("hidden", "train step")]


# -- the child: one (head, operation), printed as one JSON line ---------------------------------------------

def _status_mib(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def explicit_logits(model, input_ids, attention_mask):
    """The obvious contact head: the [B, L, L, H] product of the nucleotide states, then the Linear."""
    hidden = model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 1:-1]
    outer = hidden[:, :, None, :] * hidden[:, None, :, :]
    logits = model.head.regression(outer).squeeze(-1)
    return (logits + logits.transpose(1, 2)) / 2


def child_measure(folder: str, head: str, operation: str, sequence: str, runs: int) -> dict:
    import torch

    from rnaernie.contact import RnaErnieForContactPrediction

    torch.manual_seed(0)
    model = RnaErnieForContactPrediction.from_pretrained(folder, head="hidden")
    batch = model.tokenizer([sequence], return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    length = ids.shape[1] - 2
    labels = torch.zeros(1, length, length)

    if operation == "predict":
        model.eval()

        def run():
            with torch.no_grad():
                if head == "hidden":
                    return model.pair_probabilities(ids, mask)
                return torch.sigmoid(explicit_logits(model, ids, mask))
    else:
        model.train()
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def run():
            optimiser.zero_grad()
            if head == "hidden":
                loss = model(ids, mask, labels=labels).loss
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(explicit_logits(model, ids, mask), labels)
            loss.backward()
            optimiser.step()
            return loss

    before = _status_mib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    out = run()  # warm-up (the cold run)
    cold = {"cold_seconds": time.perf_counter() - started, "cold_extra_mib": _status_mib("VmHWM") - before}
    seconds, extra = [], []
    for _ in range(runs):
        del out
        before = _status_mib("VmRSS")
        _reset_peak()
        started = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - started)
        extra.append(_status_mib("VmHWM") - before)
    result = {"seconds": statistics.median(seconds), "extra_mib": statistics.median(extra),
              "all_seconds": seconds, "all_extra_mib": extra, **cold, "rss_loaded_mib": before, "length": length}
    if operation == "predict":
        model.eval()
        with torch.no_grad():
            result["logit_max_abs_diff_vs_other_head"] = float(
                (model(ids, mask).logits - explicit_logits(model, ids, mask)).abs().max())
    return result


# -- the parent ----------------------------------------------------------------------------------------------

def long_record() -> tuple[str, str]:
    for record_id, sequence in read_fasta(str(DATA)):
        if len(sequence) > LENGTH:
            return record_id, sequence[:LENGTH]
    raise SystemExit(f"no record over {LENGTH} nt in {DATA}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "contact.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, head, operation, sequence = args.child
        print(json.dumps(child_measure(folder, head, operation, sequence, args.runs)))
        return

    folder = converted(checkpoint("full (86M)"), "full")
    record_id, sequence = long_record()
    load = os.getloadavg()[0]
    cases = {}
    for head, operation in CASES:
        print(f"measuring {head} head, {operation} ...", file=sys.stderr)
        wall, peak, stdout = run_measured(["env", f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}", sys.executable,
                                           str(Path(__file__).resolve()), "--runs", str(args.runs),
                                           "--child", str(folder), head, operation, sequence])
        cases[f"{head} / {operation}"] = {**json.loads(stdout.strip().splitlines()[-1]), "process_peak_rss_mib": peak,
                                          "process_wall_seconds": wall}
    ratios = {operation: cases[f"hidden / {operation}"]["extra_mib"] / cases[f"explicit / {operation}"]["extra_mib"]
              for operation in ("predict", "train step")}
    report = {"record": record_id, "length": LENGTH, "runs": args.runs, "cases": cases,
              "extra_memory_ratio_hidden_over_explicit": ratios,
              "target_met": {"predict extra memory < 1/10 of the explicit head's": ratios["predict"] < TARGET_RATIO},
              "machine": {"cpus": len(os.sched_getaffinity(0)), "cpu": _cpu_model()},
              "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_at_start": load}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))


def render(report: dict) -> str:
    lines = [f"full-size model, {report['record']} cut to {report['length']} nt, median of {report['runs']} runs, "
             f"{report['date']}, load average {report['load_average_at_start']:.1f}", "",
             "| head | predict: time | predict: extra memory (cold run) | train step: time | "
             "train step: extra memory (cold run) |", "|---|---|---|---|---|"]
    for head, name in (("explicit", "explicit `[L, L, 768]` product + Linear"), ("hidden", "`hidden` (bilinear)")):
        p, t = report["cases"][f"{head} / predict"], report["cases"][f"{head} / train step"]
        lines.append(f"| {name} | {p['seconds']:.2f} s | {p['extra_mib']:.0f} MiB ({p['cold_extra_mib']:.0f}) | "
                     f"{t['seconds']:.2f} s | {t['extra_mib']:.0f} MiB ({t['cold_extra_mib']:.0f}) |")
    ratios = report["extra_memory_ratio_hidden_over_explicit"]
    lines += ["", f"extra memory, hidden / explicit: predict {ratios['predict']:.3f}, train step "
                  f"{ratios['train step']:.3f}; logits differ by at most "
                  f"{report['cases']['hidden / predict']['logit_max_abs_diff_vs_other_head']:.1e}",
              "target: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["target_met"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

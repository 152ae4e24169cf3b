"""Scoring and report: each output's worst difference, the verdict of every check, and the summary table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convert.verify.prepare import Outputs, Setup
from convert.verify.static import StaticProblems

# Folder as stored vs Paddle, on max |diff| / max |reference| of each output: 4x the largest rounding
# error measured on faithful folders (benchmarks/calibrate_half.py; full size: 7.5e-3 float16, 5.4e-2 bfloat16,
# at the pooler). Not the guard against a wrong mapping (float32 parity is); a report.
STORED_RTOL = {"float16": 3e-2, "bfloat16": 2.2e-1}


@dataclass(frozen=True)
class LayerDiff:
    """One output compared over every batch: its worst difference, or why it could not be compared."""

    name: str
    max_abs: float | None  # None when `problem` says why there is no figure
    max_rel: float | None  # max |diff| / max |reference|
    worst_at: tuple[int, ...]  # index of the largest difference
    padded_max_abs: float | None  # largest difference at padded positions (0 when there are none)
    problem: str | None = None  # e.g. missing from the folder's outputs: counts as divergent

    def within(self, limit: float, relative: bool = False) -> bool:
        figure = self.max_rel if relative else self.max_abs
        return self.problem is None and figure <= limit  # NaN is never within

    @property
    def severity(self) -> float:
        """For keeping the worst batch: a problem outranks any figure, NaN outranks a number."""
        if self.problem is not None:
            return float("inf")
        return float("inf") if np.isnan(self.max_abs) else self.max_abs


def _not_compared(name: str, problem: str) -> LayerDiff:
    return LayerDiff(name, None, None, (), None, problem)


def _diff(name: str, reference: np.ndarray | None, converted: np.ndarray | None,
          padded: np.ndarray | None) -> LayerDiff:
    if converted is None:
        return _not_compared(name, "missing from the folder's outputs")
    if reference is None:
        return _not_compared(name, "the folder gives an output the original does not have")
    if reference.shape != converted.shape:
        return _not_compared(name, f"shape {list(converted.shape)}, the original's is {list(reference.shape)}")
    delta = np.abs(reference.astype(np.float64) - converted.astype(np.float64))
    scale = float(np.abs(reference).max()) or 1.0
    padded_max = float(delta[padded].max()) if padded is not None and padded.any() else 0.0
    worst = tuple(int(i) for i in np.unravel_index(int(delta.argmax()), delta.shape))
    return LayerDiff(name, float(delta.max()), float(delta.max()) / scale, worst, padded_max)


def output_names(setup: Setup) -> list[str]:
    """The outputs of every probe batch, in network order, as the original network gives them."""
    layers = setup.conversion.paddle_config.num_hidden_layers
    names = ["embeddings"] + [f"layer {i + 1}" for i in range(layers)] + ["pooler"]
    return names + (["logits"] if setup.conversion.detection.head.logits else [])


def score(setup: Setup, reference: Outputs, ours: Outputs, every_extra: bool = True) -> list[LayerDiff]:
    """The worst difference of each output over all batches, in network order, then the further checks.

    Every output of the original must have its counterpart: one the folder does not give (fewer
    layers, no logits, a batch missing) counts as divergent. `every_extra=False` (a half-precision
    folder run as stored) leaves out the further outputs only the float32 run gives.
    """
    logits = setup.conversion.detection.head.logits
    names = output_names(setup)
    worst: dict[str, LayerDiff] = {}

    def keep(result: LayerDiff) -> None:
        if result.name not in worst or result.severity > worst[result.name].severity:
            worst[result.name] = result

    for index, (batch, ref) in enumerate(zip(setup.batches, reference.batches, strict=True)):
        out = ours.batches[index] if index < len(ours.batches) else None
        padded = ~batch.attention
        depth = len(ref.hidden_states)
        states = list(out.hidden_states) if out is not None else []
        ref_outputs = [*ref.hidden_states, ref.pooled] + ([ref.logits] if logits else [])
        our_outputs = [*states[:depth], *[None] * (depth - len(states[:depth])),
                       None if out is None else out.pooled] + ([None if out is None else out.logits] if logits else [])
        for position, (name, ref_output, our_output) in enumerate(zip(names, ref_outputs, our_outputs, strict=True)):
            mask = padded if position < depth else (logits.padded(batch.attention) if name == "logits" else None)
            keep(_diff(name, ref_output, our_output, mask))
        if len(states) > depth:
            keep(_not_compared(f"layer {depth}", f"the folder's model has {len(states) - 1} layers, the original "
                                                 f"{depth - 1}"))
    stored = {name for check in setup.conversion.detection.head.checks if check.stored_too for name in check.outputs}
    extras = [name for name in reference.extra if every_extra or name in stored]
    for name in extras:
        ours_arrays = ours.extra.get(name)
        if ours_arrays is None or len(ours_arrays) != len(reference.extra[name]):
            keep(_not_compared(name, "missing from the folder's outputs"))
            continue
        for ref_array, our_array in zip(reference.extra[name], ours_arrays, strict=True):
            keep(_diff(name, ref_array, our_array, None))
    return [worst[name] for name in dict.fromkeys([*names, *worst])]


def masked_argmax_agreement(setup: Setup, reference: Outputs, ours: Outputs) -> float | None:
    """Share of [MASK] positions where both models predict the same token (kinds whose logits are a vocabulary)."""
    logits = setup.conversion.detection.head.logits
    if logits is None or not logits.masked_argmax:
        return None
    total = agree = 0
    for batch, ref, out in zip(setup.batches, reference.batches, ours.batches):
        if out.logits is None or out.logits.shape != ref.logits.shape:
            return 0.0
        is_mask = batch.ids == setup.conversion.vocabulary.id("[MASK]")
        total += int(is_mask.sum())
        agree += int((ref.logits.argmax(-1) == out.logits.argmax(-1))[is_mask].sum())
    return agree / total if total else None


def verdict(setup: Setup, static: StaticProblems, tokenizer_mismatches: list[int], layers: list[LayerDiff],
            stored_layers: list[LayerDiff] | None, not_run_because: str | None = None) -> dict:
    """Each check's result, which failed, and where, in words (`failure`) for the CLI and the record.

    `layers` empty: parity did not run (`not_run_because` says why); that fails the parity check.
    """
    parity_failing = [layer for layer in layers if not layer.within(setup.atol)]
    checks = {
        "structure": {"passed": not static.structure, "dtype": setup.conversion.dtype,
                      "tensors": len(setup.conversion.plan.target_shapes), "problems": static.structure},
        "config": {"passed": not static.config, "problems": static.config},
        "tokenizer": {"passed": not static.tokenizer and not tokenizer_mismatches, "checked": len(setup.probes),
                      "mismatched_probes": tokenizer_mismatches, "problems": static.tokenizer},
        "parity": {"passed": bool(layers) and not parity_failing, "weights": "float32 mapping of the checkpoint",
                   "atol": setup.atol, "first_divergent_layer": parity_failing[0].name if parity_failing else None,
                   "why": parity_failing[0].problem if parity_failing else None, "ran": bool(layers),
                   "not_run_because": None if layers else not_run_because},
    }
    if stored_layers is not None:
        rtol = STORED_RTOL[setup.conversion.dtype]
        stored_failing = [layer.name for layer in stored_layers if not layer.within(rtol, relative=True)]
        checks["stored_parity"] = {"passed": not stored_failing, "dtype": setup.conversion.dtype, "rtol": rtol,
                                   "first_divergent_layer": stored_failing[0] if stored_failing else None,
                                   "layers": layer_rows(stored_layers)}
    failed = [name for name, check in checks.items() if not check["passed"]]
    divergent = [checks[name]["first_divergent_layer"] for name in ("parity", "stored_parity") if name in failed]
    return {"verdict": "fail" if failed else "pass", "failed_checks": failed,
            "failure": "; ".join(_where(name, checks[name]) for name in failed) or None,
            "first_divergent_layer": divergent[0] if divergent else None, "atol": setup.atol, "checks": checks}


def unfinished_verdict(message: str) -> dict:
    """The verdict of a verification that could not finish: failed, saying why (no figures)."""
    return {"verdict": "fail", "failed_checks": ["verification"], "failure": f"verification did not finish: {message}",
            "first_divergent_layer": None, "checks": {"verification": {"passed": False, "problems": [message]}}}


def _listed(problems: list[str]) -> str:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _where(name: str, check: dict) -> str:
    """One failed check, in words, naming the tensor, config field, file or layer."""
    if name == "structure":
        return "structure: " + _listed(check["problems"])
    if name == "config":
        return "config: " + "; ".join(f"config.json {p['field']} is {p['folder']!r}, the checkpoint gives "
                                      f"{p['expected']!r}" for p in check["problems"])
    if name == "tokenizer":
        said = check["problems"][:]
        if check["mismatched_probes"]:
            said.append(f"disagrees with the official rules on probes {check['mismatched_probes']}")
        return "tokenizer: " + _listed(said)
    if name == "parity" and not check["ran"]:
        return f"parity: not run, transformers cannot load the folder ({check['not_run_because']})"
    if name == "parity":
        why = f", {check['why']}" if check.get("why") else ""
        return f"parity: first divergence at {check['first_divergent_layer']}{why} (atol {check['atol']:g})"
    return (f"{check['dtype']} folder as stored: first divergence at {check['first_divergent_layer']} "
            f"(max |diff| / max |reference| over rtol {check['rtol']:g})")


def layer_rows(layers: list[LayerDiff]) -> list[dict]:
    rows = []
    for l in layers:
        row = {"name": l.name, "max_abs": l.max_abs, "max_rel": l.max_rel, "padded_max_abs": l.padded_max_abs,
               "worst_at": list(l.worst_at)}
        rows.append({**row, "problem": l.problem} if l.problem else row)
    return rows


def _figure(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2e}"


def summary_table(verification: dict) -> str:
    checks = verification["checks"]
    width = max([26, *(len(row["name"]) for row in verification["layers"])])
    lines = [f"{'output':<{width}} {'max |diff|':>11} {'max rel':>10} {'padded':>10}  status (float32 mapping)"]
    for row in verification["layers"]:
        if row.get("problem"):
            status = f"DIVERGES ({row['problem']})"
        else:
            status = "ok" if row["max_abs"] <= verification["atol"] else "DIVERGES"
        lines.append(f"{row['name']:<{width}} {_figure(row['max_abs'], 11)} {_figure(row['max_rel'], 10)} "
                     f"{_figure(row['padded_max_abs'], 10)}  {status}")
    if "masked_argmax_agreement" in verification:
        lines.append(f"argmax agreement at [MASK] positions: {verification['masked_argmax_agreement']:.1%}")
    if "stored_parity" in checks:
        stored = checks["stored_parity"]
        measured = [r for r in stored["layers"] if r["max_rel"] is not None]
        if measured:
            worst = max(measured, key=lambda row: row["max_rel"])
            lines.append(f"{stored['dtype']} folder as stored: largest max |diff| "
                         f"{max(r['max_abs'] for r in measured):.2e}, largest relative {worst['max_rel']:.2e} at "
                         f"{worst['name']} (rtol {stored['rtol']:g})")
    lines.append("checks: " + ", ".join(f"{name} {'ok' if check['passed'] else 'FAILED'}" for name, check in checks.items()))
    return "\n".join(lines)

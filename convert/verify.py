"""Prove parity: the original checkpoint in Paddle vs the converted folder in stock transformers.

Both sides see the same probe sequences. The Paddle side is `convert.paddle_reference`, loaded
through the safe reader; the PyTorch side is exactly what users load: `AutoTokenizer` and
`AutoModelFor...` on the output folder. Compared: every hidden state layer by layer, the pooler,
and the logits (MLM columns matched by token), at real and padded positions.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from convert import __version__
from convert.errors import ConversionError, MissingDependencyError, ParityError
from convert.writer import write_json

VERIFICATION_RECORD = "verification.json"
DEFAULT_ATOL = {"float32": 1e-4, "float16": 5e-2, "bfloat16": 5e-1}
MAX_NUCLEOTIDES = 510
INSTALL_HINT = "pip install 'rnaernie-convert[verify]' (Paddle, torch, transformers) or pass --no-verify"


def builtin_probes() -> list[str]:
    """Deterministic RNA probes: 1 to 510 nt, lowercase, T, N, gaps, IUPAC codes, [MASK] positions."""
    rng = np.random.default_rng(20240601)

    def rna(n: int) -> str:
        return "".join(rng.choice(list("ACGU"), size=n))

    masked = list(rna(60))
    for i in range(3, 60, 9):
        masked[i] = "[MASK]"
    return [
        "A",
        "GC",
        rna(7).lower(),
        rna(20).replace("U", "T"),
        "CGAUUCNCGUUCCC--CCGCCUCCA",
        "AUGRYKMSWBDHVN..augc",
        "".join(masked),
        rna(45),
        rna(MAX_NUCLEOTIDES),
    ]


def _long_probe() -> str:
    """A 1300-nt sequence: three 512-token chunks for the long-sequence classifier check."""
    rng = np.random.default_rng(7)
    return "".join(rng.choice(list("ACGU"), size=1300))


def read_probe_file(path: Path) -> list[str]:
    """FASTA (records joined across lines) or one sequence a line; blank lines ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"cannot read probe file {path} ({exc}); pass FASTA or one sequence a line.") from None
    sequences: list[str] = []
    fasta = any(line.startswith(">") for line in lines)
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            sequences.append("")
        elif fasta:
            if not sequences:
                raise ConversionError(f"{path}: FASTA sequence data before the first '>' header.")
            sequences[-1] += line
        else:
            sequences.append(line)
    sequences = [s for s in sequences if s]
    if not sequences:
        raise ConversionError(f"{path} holds no sequences; pass FASTA or one sequence a line.")
    return sequences


def require_verify_dependencies() -> None:
    missing = [name for name in ("paddle", "torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"verification needs {', '.join(missing)}, not installed: {INSTALL_HINT}.")


@dataclass
class LayerDiff:
    name: str
    max_abs: float
    max_rel: float  # max |diff| / max |reference|
    worst_at: tuple[int, ...]  # index of the largest difference
    padded_max_abs: float  # largest difference at padded positions (0 when there are none)


def _diff(name: str, reference: np.ndarray, converted: np.ndarray, padded: np.ndarray | None) -> LayerDiff:
    delta = np.abs(reference.astype(np.float64) - converted.astype(np.float64))
    scale = float(np.abs(reference).max()) or 1.0
    padded_max = float(delta[padded].max()) if padded is not None and padded.any() else 0.0
    worst = tuple(int(i) for i in np.unravel_index(int(delta.argmax()), delta.shape))
    return LayerDiff(name, float(delta.max()), float(delta.max()) / scale, worst, padded_max)


def _batches(encoded: list[list[int]], max_tokens: int = 256) -> list[list[int]]:
    """Group probe indices so each padded batch stays small; sorted by length to limit padding,
    but every batch of more than one sequence still has padded positions."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches: list[list[int]] = [[]]
    for i in order:
        width = len(encoded[i])
        if batches[-1] and width * (len(batches[-1]) + 1) > max_tokens:
            batches.append([])
        batches[-1].append(i)
    return batches


def compare(checkpoint: Path, out_dir: Path, *, config: Path | None = None, probes: list[str],
            atol: float | None, say: Callable[[str], None]) -> dict:
    """Run both models on `probes`; return the verification record (verdict + per-layer figures)."""
    import torch
    import transformers
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    from convert.paddle_reference import build_reference, paddle, run_reference
    from convert.pdparams import load_pdparams
    from convert.pipeline import Sha256InBackground, as_float32, detect_head, read_conversion_record
    from rnaernie.config import find_config_file, load_paddle_config
    from rnaernie.long_sequence import chunk_input_ids, classify_long
    from rnaernie.tokenizer import build_vocabulary, official_input_ids

    transformers.logging.set_verbosity_error()  # load reports and progress bars would drown the table
    transformers.logging.disable_progress_bar()
    started = time.perf_counter()
    record = read_conversion_record(out_dir)
    atol = DEFAULT_ATOL[record["dtype"]] if atol is None else atol
    paddle_config = load_paddle_config(config or find_config_file(checkpoint))
    source = load_pdparams(checkpoint)
    sha = Sha256InBackground(checkpoint)
    tensors = as_float32(source.tensors, str(checkpoint))
    head = detect_head(set(tensors), str(checkpoint))
    if head.name != record["head"]:
        raise ConversionError(f"{out_dir} was converted from a {record['head']} checkpoint but {checkpoint} is "
                              f"{head.name}; pass the checkpoint the folder was made from.")
    vocab = build_vocabulary(tuple(_source_tokens(record)), "the conversion record")
    kept = list(vocab.kept_source_ids)

    say(f"verifying {out_dir} against {checkpoint} on {len(probes)} sequences")
    timings = {"read": time.perf_counter() - started}
    clock = time.perf_counter()
    ernie, top = build_reference(tensors, paddle_config, head.name, head.source_prefix)
    timings["build_paddle"] = time.perf_counter() - clock
    clock = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model_class = {"BertForMaskedLM": AutoModelForMaskedLM, "BertModel": AutoModel,
                   "BertForSequenceClassification": AutoModelForSequenceClassification}[record["architecture"]]
    # computed in float32 whatever the stored dtype (`.float()` works on every transformers version)
    model = model_class.from_pretrained(out_dir).float().eval()
    base = model if record["architecture"] == "BertModel" else AutoModel.from_pretrained(out_dir).float().eval()
    timings["load_transformers"] = time.perf_counter() - clock
    timings["run_paddle"] = timings["run_transformers"] = 0.0

    encoded = [tokenizer(seq, truncation=True, max_length=MAX_NUCLEOTIDES + 2)["input_ids"] for seq in probes]
    tokenizer_mismatches = [i for i, (seq, ids) in enumerate(zip(probes, encoded))
                            if ids != official_input_ids(seq, vocab)]

    names = ["embeddings"] + [f"layer {i + 1}" for i in range(paddle_config.num_hidden_layers)] + ["pooler"]
    if record["architecture"] != "BertModel":
        names.append("logits")
    worst: dict[str, LayerDiff] = {}
    masked_total = masked_agree = 0
    for batch in _batches(encoded):
        batch_ids = [encoded[i] for i in batch]
        width = max(len(ids) for ids in batch_ids)
        ids = np.zeros((len(batch), width), dtype=np.int64)  # pad id 0 in both vocabularies
        for row, seq_ids in enumerate(batch_ids):
            ids[row, : len(seq_ids)] = seq_ids
        attention = (np.arange(width)[None, :] < np.array([len(x) for x in batch_ids])[:, None])
        clock = time.perf_counter()
        ref = run_reference(ernie, top, np.asarray(kept)[ids], head.name)
        timings["run_paddle"] += time.perf_counter() - clock
        clock = time.perf_counter()
        with torch.no_grad():
            inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attention.astype(np.int64)),
                      "token_type_ids": torch.zeros_like(torch.from_numpy(ids))}
            out = model(**inputs, output_hidden_states=True)
            pooled = base.pooler(out.hidden_states[-1]).numpy()
        timings["run_transformers"] += time.perf_counter() - clock
        padded = ~attention
        results = [_diff(name, r, o.numpy(), padded) for name, r, o in
                   zip(names, ref.hidden_states, out.hidden_states)]
        results.append(_diff("pooler", ref.pooled, pooled, None))
        if record["architecture"] == "BertForMaskedLM":
            ref_logits = ref.logits[..., kept]
            results.append(_diff("logits", ref_logits, out.logits.numpy(), padded))
            is_mask = ids == vocab.id("[MASK]")
            masked_total += int(is_mask.sum())
            masked_agree += int((ref_logits.argmax(-1) == out.logits.numpy().argmax(-1))[is_mask].sum())
        elif record["architecture"] == "BertForSequenceClassification":
            results.append(_diff("logits", ref.logits, out.logits.numpy(), None))
        for result in results:
            if result.name not in worst or result.max_abs > worst[result.name].max_abs:
                worst[result.name] = result

    if record["architecture"] == "BertForSequenceClassification":
        # lncRNA-style inputs: several 512-token chunks, logits averaged over chunks on both sides
        long_sequence = _long_probe()
        clock = time.perf_counter()
        chunks = np.asarray(chunk_input_ids([vocab.id("[CLS]"), *tokenizer(long_sequence, add_special_tokens=False,
                                                                            verbose=False)["input_ids"],
                                             vocab.id("[SEP]")], vocab.id("[CLS]"), vocab.id("[SEP]")))
        ref_long = run_reference(ernie, top, np.asarray(kept)[chunks], head.name).logits.mean(axis=0)
        timings["run_paddle"] += time.perf_counter() - clock
        clock = time.perf_counter()
        ours_long = classify_long(model, tokenizer, long_sequence).numpy()
        timings["run_transformers"] += time.perf_counter() - clock
        worst["long-sequence logits"] = _diff("long-sequence logits", ref_long, ours_long, None)
        names.append("long-sequence logits")

    layers = [worst[name] for name in names]
    failing = [layer for layer in layers if not layer.max_abs <= atol]
    verdict = "pass" if not failing and not tokenizer_mismatches else "fail"
    lengths = [len(e) - 2 for e in encoded]
    verification = {
        "verdict": verdict,
        "first_divergent_layer": failing[0].name if failing else None,
        "atol": atol,
        "dtype": record["dtype"],
        "max_abs_logit_diff": worst["logits"].max_abs if "logits" in worst else None,
        "layers": [{"name": l.name, "max_abs": l.max_abs, "max_rel": l.max_rel,
                    "padded_max_abs": l.padded_max_abs, "worst_at": list(l.worst_at)} for l in layers],
        "tokenizer": {"checked": len(probes), "mismatched_probes": tokenizer_mismatches},
        "probe": {"sequences": len(probes), "min_length": min(lengths), "max_length": max(lengths),
                  "tokens": int(sum(len(e) for e in encoded))},
        "source": {"file": checkpoint.name, "sha256": sha.result(),
                   "converted_from_sha256": record["source"].get("sha256")},
        "tool_version": __version__,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "paddle": paddle.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {phase: round(seconds, 2) for phase, seconds in timings.items()},
    }
    if masked_total:
        verification["masked_argmax_agreement"] = masked_agree / masked_total
    return verification


def _source_tokens(record: dict) -> list[str]:
    """Rebuild the source vocabulary order from the record (kept tokens at their source ids)."""
    vocabulary = record["vocabulary"]
    size = len(vocabulary["tokens"]) + len(vocabulary["dropped"])
    tokens: list[str | None] = [None] * size
    for token, source_id in zip(vocabulary["tokens"], vocabulary["source_ids"]):
        tokens[source_id] = "T" if token == "U" else token
    dropped = iter(vocabulary["dropped"])
    return [t if t is not None else next(dropped) for t in tokens]


def summary_table(verification: dict) -> str:
    lines = [f"{'output':<21} {'max |diff|':>11} {'max rel':>10} {'padded':>10}  status"]
    for row in verification["layers"]:
        status = "ok" if row["max_abs"] <= verification["atol"] else "DIVERGES"
        lines.append(f"{row['name']:<21} {row['max_abs']:>11.2e} {row['max_rel']:>10.2e} "
                     f"{row['padded_max_abs']:>10.2e}  {status}")
    if "masked_argmax_agreement" in verification:
        lines.append(f"argmax agreement at [MASK] positions: {verification['masked_argmax_agreement']:.1%}")
    if verification["tokenizer"]["mismatched_probes"]:
        lines.append(f"tokenizer disagrees with the official rules on probes "
                     f"{verification['tokenizer']['mismatched_probes']}")
    return "\n".join(lines)


def verify_conversion(checkpoint: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                      probe: str | Path | None = None, atol: float | None = None, report: str | Path | None = None,
                      say: Callable[[str], None] = print) -> dict:
    """Check `out_dir` against `checkpoint`; save the verdict in OUT_DIR (and `report`), refresh the card.

    Returns the verification record when parity holds; raises `ParityError` (exit code 1 in the
    CLI) when it does not, `ConversionError` for bad input.
    """
    from convert.card import render_card
    from convert.pipeline import read_conversion_record

    require_verify_dependencies()
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if not out_dir.is_dir():
        raise ConversionError(f"{out_dir} is not a folder; convert the checkpoint first (without --verify-only).")
    probes = builtin_probes() + (read_probe_file(Path(probe)) if probe else [])
    _use_all_cores()
    verification = compare(checkpoint, out_dir, config=config, probes=probes, atol=atol, say=say)
    source = verification["source"]
    if source["converted_from_sha256"] and source["sha256"] != source["converted_from_sha256"]:
        say(f"note: {checkpoint} is not the file {out_dir} was converted from (its sha256 differs)")
    write_json(out_dir / VERIFICATION_RECORD, verification)
    if report:
        write_json(Path(report), verification)
    (out_dir / "README.md").write_text(render_card(read_conversion_record(out_dir), verification), encoding="utf-8")
    say(summary_table(verification))
    if verification["verdict"] != "pass":
        where = verification["first_divergent_layer"] or "the tokenizer"
        raise ParityError(f"parity failed: first divergence at {where} (atol {verification['atol']:g}); the figures "
                          f"are in {out_dir / VERIFICATION_RECORD}. Do not publish this folder.")
    say(f"parity OK: every output within atol {verification['atol']:g} ({verification['seconds']:.1f} s)")
    return verification


def _use_all_cores() -> None:
    """Paddle's CPU kernels run single-threaded unless OMP_NUM_THREADS is set before it loads;
    the two models run one after the other, so each may use every core."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(cores))

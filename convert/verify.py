"""Prove parity: the original checkpoint in Paddle vs the converted folder in stock transformers.

Both sides see the same probe sequences. The Paddle side is `convert.paddle_reference`, loaded
through the safe reader; the PyTorch side is exactly what users load: `AutoTokenizer` and
`AutoModelFor...` on the output folder. Compared: every hidden state layer by layer, the pooler,
and the logits (MLM columns matched by token), at real and padded positions.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.util
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convert import __version__
from convert.errors import ConversionError, MissingDependencyError, ParityError
from convert.records import VERIFICATION_RECORD
from convert.writer import write_json

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
    """FASTA (optionally gzipped) or one sequence a line (`rnaernie.sequences` reads both)."""
    from rnaernie.sequences import read_records

    return [record.sequence for record in read_records(path)]


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


@dataclass
class _Outputs:
    """One model's outputs on every probe batch, in the converted vocabulary's columns."""

    batches: list = field(default_factory=list)  # per batch: (hidden states list, pooled, logits or None)
    long_logits: np.ndarray | None = None  # chunk-averaged classifier logits on the long probe
    seconds: dict = field(default_factory=dict)
    widget: list | None = None  # masked LM: the card's fill-mask examples, computed by this model


def _probe_batches(encoded: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids [B, L] padded with 0, attention [B, L] bool) for each batch of probe indices."""
    batches = []
    for batch in _batches(encoded):
        width = max(len(encoded[i]) for i in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)  # pad id 0 in both vocabularies
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = encoded[i]
        batches.append((ids, ids != 0))
    return batches


@dataclass
class Setup:
    """Everything both sides need, read once: the records, the checkpoint's weights and the probe ids."""

    checkpoint: Path
    out_dir: Path
    record: dict
    paddle_config: object  # convert.paddle_config.ErnieConfig
    tensors: dict  # name -> float32 array (views of the memory-mapped file where possible)
    detection: object  # convert.heads.Detection
    vocab: object  # convert.vocabulary.Vocabulary
    probes: list[str]
    encoded: list[list[int]]  # official ids of each probe, converted vocabulary
    batches: list[tuple[np.ndarray, np.ndarray]]
    atol: float
    sha: object  # Sha256InBackground
    source: object  # convert.pdparams.PaddleCheckpoint: the mapped file, whose pages can be released
    long_sequence: str | None = None  # classifiers with a long-sequence mode: a 3-chunk probe
    long_chunks: np.ndarray | None = None


def prepare(checkpoint: Path, out_dir: Path, *, config: Path | None, probes: list[str], atol: float | None) -> Setup:
    """Read the folder's record and the checkpoint; decide the kind; tokenize and batch the probes."""
    from convert.heads import HEADS, detect_head
    from convert.paddle_config import find_config_file, load_paddle_config
    from convert.pdparams import load_pdparams
    from convert.pipeline import Sha256InBackground, as_float32
    from convert.records import read_conversion_record
    from convert.vocabulary import build_vocabulary, official_input_ids
    from rnaernie.long_sequence import chunk_input_ids

    record = read_conversion_record(out_dir)
    if record.get("head") not in HEADS:
        raise ConversionError(f"{out_dir} was made by an older rnaernie-convert (head {record.get('head')!r}); "
                              "convert the checkpoint again, then verify.")
    paddle_config = load_paddle_config(config or find_config_file(checkpoint))
    source = load_pdparams(checkpoint)
    sha = Sha256InBackground(checkpoint)
    tensors = {key: as_float32(array) for key, array in source.tensors.items()}
    try:
        detection = detect_head(set(tensors), paddle_config.architecture, record["head"], str(checkpoint))
    except ConversionError:
        found = detect_head(set(tensors), paddle_config.architecture, None, str(checkpoint))
        raise ConversionError(f"{out_dir} was converted from a {HEADS[record['head']].description} but {checkpoint} "
                              f"is a {found.head.description}; pass the checkpoint the folder was made from.") from None
    vocab = build_vocabulary(tuple(_source_tokens(record)), "the conversion record")
    encoded = [official_input_ids(seq, vocab) for seq in probes]
    setup = Setup(checkpoint, out_dir, record, paddle_config, tensors, detection, vocab, probes, encoded,
                  _probe_batches(encoded), DEFAULT_ATOL[record["dtype"]] if atol is None else atol, sha, source)
    if detection.head.long_sequence:  # lncRNA-style input: several 512-token chunks
        setup.long_sequence = _long_probe()
        ids = official_input_ids(setup.long_sequence, vocab, max_nucleotides=10**9)
        setup.long_chunks = np.asarray(chunk_input_ids(ids, vocab.id("[CLS]"), vocab.id("[SEP]")))
    return setup


def run_paddle(setup: Setup) -> _Outputs:
    """The original network on the probe batches (source vocabulary ids; logits back in kept columns)."""
    from convert.paddle_reference import build_reference, run_reference

    clock = time.perf_counter()
    kept = np.asarray(setup.vocab.kept_source_ids)
    # each weight's pages leave memory once Paddle holds its copy
    ernie, top = build_reference(setup.tensors, setup.paddle_config, setup.detection, setup.source.release)
    out = _Outputs(seconds={"build_paddle": time.perf_counter() - clock})
    clock = time.perf_counter()
    for ids, _ in setup.batches:
        ref = run_reference(ernie, top, kept[ids])
        logits = ref.logits[..., kept] if setup.detection.head.logits == "vocabulary" else ref.logits
        out.batches.append((ref.hidden_states, ref.pooled, logits))
    if setup.long_chunks is not None:
        out.long_logits = run_reference(ernie, top, kept[setup.long_chunks]).logits.mean(axis=0)
    out.seconds["run_paddle"] = time.perf_counter() - clock
    del ernie, top  # free the Paddle model before the transformers one is loaded: one model in memory at a time
    gc.collect()
    return out


def run_transformers(setup: Setup) -> tuple[_Outputs, list[int]]:
    """The converted folder exactly as users load it (AutoTokenizer + the head's Auto class, float32).

    Returns its outputs and the probes on which its tokenizer disagrees with the official ids.
    """
    import torch
    import transformers

    from rnaernie.long_sequence import classify_long

    clock = time.perf_counter()
    transformers.logging.set_verbosity_error()  # load reports and progress bars would drown the table
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(setup.out_dir)
    # `.float()` rather than a dtype argument: the same on every transformers version
    model = getattr(transformers, setup.detection.head.auto_class).from_pretrained(setup.out_dir).float().eval()
    pooler = _pooler(model, setup.out_dir)
    out = _Outputs(seconds={"load_transformers": time.perf_counter() - clock})
    if setup.detection.head.logits == "vocabulary":  # the card's widget shows the converted model's outputs
        from convert.widget import fill_mask_examples

        out.widget = fill_mask_examples(model, tokenizer)
    clock = time.perf_counter()
    with torch.no_grad():
        for ids, attention in setup.batches:
            result = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(attention.astype(np.int64)),
                           token_type_ids=torch.zeros_like(torch.from_numpy(ids)), output_hidden_states=True)
            pooled = pooler(result.hidden_states[-1]).numpy()
            logits = getattr(result, "logits", None)
            out.batches.append(([h.numpy() for h in result.hidden_states], pooled,
                                None if logits is None else logits.numpy()))
    if setup.long_sequence is not None:
        out.long_logits = classify_long(model, tokenizer, setup.long_sequence).numpy()
    out.seconds["run_transformers"] = time.perf_counter() - clock
    mismatches = [i for i, (seq, ids) in enumerate(zip(setup.probes, setup.encoded))
                  if tokenizer(seq, truncation=True, max_length=MAX_NUCLEOTIDES + 2)["input_ids"] != ids]
    return out, mismatches


def _pooler(model, out_dir: Path):
    """The folder's pooler, as `AutoModel` would load it. Heads without one (masked LM, token
    classifier) get a stock `BertPooler` with the folder's pooler weights, rather than a second
    copy of the whole model."""
    from safetensors import safe_open
    from transformers.models.bert.modeling_bert import BertPooler

    base = getattr(model, "bert", model)
    if getattr(base, "pooler", None) is not None:
        return base.pooler
    pooler = BertPooler(model.config)
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as weights:
        pooler.dense.weight.data = weights.get_tensor("bert.pooler.dense.weight").float()
        pooler.dense.bias.data = weights.get_tensor("bert.pooler.dense.bias").float()
    return pooler.eval()


def score(setup: Setup, reference: _Outputs, ours: _Outputs) -> list[LayerDiff]:
    """The worst difference of each output over all batches, in network order; records the [MASK] argmax."""
    head = setup.detection.head
    names = ["embeddings"] + [f"layer {i + 1}" for i in range(setup.paddle_config.num_hidden_layers)] + ["pooler"]
    names += ["logits"] if head.logits else []
    worst: dict[str, LayerDiff] = {}
    for (ids, attention), (ref_states, ref_pooled, ref_logits), (states, pooled, logits) in zip(
            setup.batches, reference.batches, ours.batches):
        padded = ~attention
        results = [_diff(name, r, o, padded) for name, r, o in zip(names, ref_states, states)]
        results.append(_diff("pooler", ref_pooled, pooled, None))
        if head.logits:
            results.append(_diff("logits", ref_logits, logits, padded if head.logits != "sequence-labels" else None))
        for result in results:
            if result.name not in worst or result.max_abs > worst[result.name].max_abs:
                worst[result.name] = result
    if setup.long_sequence is not None:
        worst["long-sequence logits"] = _diff("long-sequence logits", reference.long_logits, ours.long_logits, None)
        names.append("long-sequence logits")
    return [worst[name] for name in names]


def masked_argmax_agreement(setup: Setup, reference: _Outputs, ours: _Outputs) -> float | None:
    """Share of [MASK] positions where both models predict the same token (masked LM only)."""
    if setup.detection.head.logits != "vocabulary":
        return None
    total = agree = 0
    for (ids, _), ref, out in zip(setup.batches, reference.batches, ours.batches):
        is_mask = ids == setup.vocab.id("[MASK]")
        total += int(is_mask.sum())
        agree += int((ref[2].argmax(-1) == out[2].argmax(-1))[is_mask].sum())
    return agree / total if total else None


def compare(checkpoint: Path, out_dir: Path, *, config: Path | None = None, probes: list[str],
            atol: float | None, say: Callable[[str], None]) -> dict:
    """Run both models on `probes`; return the verification record (verdict + per-layer figures).

    Both models get the same ids, made by the official tokenization rules; the converted
    tokenizer is checked against those rules separately.
    """
    from convert.paddle_reference import paddle

    started = time.perf_counter()
    setup = prepare(Path(checkpoint), Path(out_dir), config=config, probes=probes, atol=atol)
    say(f"verifying {out_dir} against {checkpoint} on {len(probes)} sequences")
    # One side after the other: run concurrently (threads), the two frameworks' thread pools and
    # the GIL made both slower than this (measured on 2 cores).
    reference = run_paddle(setup)
    ours, tokenizer_mismatches = run_transformers(setup)
    layers = score(setup, reference, ours)
    import torch
    import transformers

    failing = [layer for layer in layers if not layer.max_abs <= setup.atol]
    lengths = [len(e) - 2 for e in setup.encoded]
    logits = [layer for layer in layers if layer.name == "logits"]
    verification = {
        "verdict": "pass" if not failing and not tokenizer_mismatches else "fail",
        "first_divergent_layer": failing[0].name if failing else None,
        "atol": setup.atol,
        "dtype": setup.record["dtype"],
        "max_abs_logit_diff": logits[0].max_abs if logits else None,
        "layers": [{"name": l.name, "max_abs": l.max_abs, "max_rel": l.max_rel,
                    "padded_max_abs": l.padded_max_abs, "worst_at": list(l.worst_at)} for l in layers],
        "tokenizer": {"checked": len(probes), "mismatched_probes": tokenizer_mismatches},
        "probe": {"sequences": len(probes), "min_length": min(lengths), "max_length": max(lengths),
                  "tokens": int(sum(len(e) for e in setup.encoded))},
        "source": {"file": Path(checkpoint).name, "sha256": setup.sha.result(),
                   "converted_from_sha256": setup.record["source"].get("sha256")},
        "tool_version": __version__,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "paddle": paddle.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {phase: round(seconds, 2) for phase, seconds in {**reference.seconds, **ours.seconds}.items()},
    }
    agreement = masked_argmax_agreement(setup, reference, ours)
    if agreement is not None:
        verification["masked_argmax_agreement"] = agreement
    if ours.widget is not None:
        verification["widget"] = ours.widget
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
    from convert.records import read_conversion_record

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

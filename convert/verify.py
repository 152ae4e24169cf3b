"""Prove parity: the original checkpoint in Paddle vs the converted folder in stock transformers.

Both sides see the same probe sequences. The Paddle side is `convert.paddle_reference`, loaded
through the safe reader; the PyTorch side is exactly what users load: `AutoTokenizer` and
`AutoModelFor...` on the output folder. Compared: every hidden state layer by layer, the pooler,
and the logits (MLM columns matched by token), at real and padded positions.

Four checks, each named in the record when it fails:
- structure: every tensor in `model.safetensors` is, bit for bit, the converter's float32 mapping
  of the checkpoint cast to the stored dtype; none missing, none extra;
- config: `config.json` equals the config the converter derives from the checkpoint, field by field;
- tokenizer: the folder's tokenizer gives the official ids on every probe;
- parity: the float32 mapping, run in stock transformers with the folder's config, matches the
  Paddle reference within the float32 tolerance. When the folder keeps the dropped `[IND]` and
  class-token rows aside (`type_guided.safetensors`), parity also covers what they feed: the prompt
  `[CLS] seq [IND] <class> [SEP]` with every class token, and, for the pre-trained model, the type
  probabilities after `[IND]` on every probe, the rows read from the file as `rnaernie` reads them. For a float16/bfloat16 folder the folder as stored
  is run as well ("stored parity"), against a tolerance calibrated from measured rounding error.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convert import __version__
from convert.errors import ConversionError, MissingDependencyError, ParityError
from convert.interruptions import signal_point
from convert.records import VERIFICATION_RECORD
from convert.writer import json_text, replace_files, write_json

PARITY_ATOL = 1e-4  # float32 mapping vs Paddle; a correct conversion reaches about 1e-5
# Folder as stored vs Paddle, on max |diff| / max |reference| of each output: 4x the largest rounding
# error measured on faithful folders (benchmarks/calibrate_half.py; full size: 7.5e-3 float16, 5.4e-2 bfloat16,
# at the pooler). Not the guard against a wrong mapping (structure, config and float32 parity are); a report.
STORED_RTOL = {"float16": 3e-2, "bfloat16": 2.2e-1}
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
    type_guided: dict = field(default_factory=dict)  # output name -> arrays (one per batch), see `TypeGuidedProbes`
    seconds: dict = field(default_factory=dict)
    widget: list | None = None  # masked LM: the card's fill-mask examples, computed by this model


@dataclass
class TypeGuidedProbes:
    """Inputs that reach the rows kept aside in the side file.

    `prompt_sets`: (bodies, classes) for `[CLS] body [IND] <class> [SEP]`: every class token on the
    shortest probe, then each short probe with one class in turn, so every kept input row is read;
    two sets, each one padded batch, so the short class prompts are not padded to the probes' length. `bodies`
    (the indicator only): every probe with an empty slot, whose type probabilities read the [IND] row
    and the decoder rows.
    """

    class_tokens: tuple[str, ...]
    prompt_sets: list[tuple[list[list[int]], list[str]]]  # converted-vocabulary ids, short probes only
    bodies: list[list[int]]


TYPE_GUIDED_PROBE_NUCLEOTIDES = 25  # the longest probe the type-guided checks use (6 of the 9 built-in ones)


def _type_guided_probes(record: dict, head, encoded: list[list[int]]) -> TypeGuidedProbes | None:
    side = record.get("type_guided")
    if not side:
        return None  # converted before the side file existed, or a vocabulary without [IND]
    # the kept rows read the same at any length: short probes reach them all, at a small cost
    bodies = [ids[1:-1] for ids in encoded if len(ids) - 2 <= TYPE_GUIDED_PROBE_NUCLEOTIDES]
    classes = tuple(side["class_tokens"])
    shortest = min(range(len(bodies)), key=lambda i: len(bodies[i]))
    prompt_sets = [([bodies[shortest]] * len(classes), list(classes)),
                   (bodies, [classes[i % len(classes)] for i in range(len(bodies))])]
    return TypeGuidedProbes(classes, prompt_sets, bodies if head.type_guided == "indicator" else [])


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
    plan: object  # convert.mapping.Plan: the rows the converter follows for this checkpoint
    folder_config: dict  # the folder's config.json
    long_sequence: str | None = None  # classifiers with a long-sequence mode: a 3-chunk probe
    long_chunks: np.ndarray | None = None
    type_guided: TypeGuidedProbes | None = None  # folders with a type_guided.safetensors


def prepare(checkpoint: Path, out_dir: Path, *, config: Path | None, probes: list[str], atol: float | None) -> Setup:
    """Read the folder's record and the checkpoint; decide the kind; tokenize and batch the probes."""
    from convert.heads import HEADS, detect_head
    from convert.paddle_config import find_config_file, load_paddle_config
    from convert.pdparams import load_pdparams
    from convert.pipeline import Sha256InBackground, as_float32, mapping_plan
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
    plan = mapping_plan(tensors, detection, paddle_config, vocab, str(checkpoint))
    setup = Setup(checkpoint, out_dir, record, paddle_config, tensors, detection, vocab, probes, encoded,
                  _probe_batches(encoded), PARITY_ATOL if atol is None else atol, sha, source, plan,
                  _read_folder_config(out_dir))
    setup.type_guided = _type_guided_probes(record, detection.head, encoded)
    if detection.head.long_sequence:  # lncRNA-style input: several 512-token chunks
        setup.long_sequence = _long_probe()
        ids = official_input_ids(setup.long_sequence, vocab, max_nucleotides=10**9)
        setup.long_chunks = np.asarray(chunk_input_ids(ids, vocab.id("[CLS]"), vocab.id("[SEP]")))
    return setup


def _read_folder_config(out_dir: Path) -> dict:
    import json

    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {out_dir / 'config.json'} ({exc}); convert the checkpoint again.") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{out_dir / 'config.json'} is not a JSON object; convert the checkpoint again.")
    return config


def float32_mapping(setup: Setup) -> dict[str, np.ndarray]:
    """The converter's own mapping of the checkpoint, in float32 (views of the checkpoint where possible)."""
    from convert.pipeline import mapped_tensor

    return {row.target: mapped_tensor(row, setup.tensors, setup.vocab, setup.paddle_config) for row in setup.plan.rows}


def check_structure(setup: Setup, mapping: dict[str, np.ndarray]) -> list[str]:
    """Problems found comparing `model.safetensors` with `mapping` cast to the stored dtype, bit for bit."""
    import torch
    from safetensors import SafetensorError, safe_open

    from convert.writer import to_dtype

    dtype = setup.record["dtype"]
    path = setup.out_dir / "model.safetensors"
    source_of = {row.target: setup.source.tensors[row.source] for row in setup.plan.rows}
    problems: list[str] = []
    try:
        with safe_open(str(path), framework="pt") as stored:
            names = set(stored.keys())
            problems += [f"{name}: missing from model.safetensors" for name in mapping if name not in names]
            problems += [f"{name}: in model.safetensors but not in the checkpoint's mapping"
                         for name in sorted(names - set(mapping))]
            for name in (name for name in mapping if name in names):
                tensor = stored.get_tensor(name)
                if tensor.dtype != getattr(torch, dtype):
                    problems.append(f"{name}: stored as {str(tensor.dtype).removeprefix('torch.')}, "
                                    f"the conversion record says {dtype}")
                    continue
                want = to_dtype(mapping[name], dtype)
                if tuple(tensor.shape) != want.shape:
                    problems.append(f"{name}: shape {tuple(tensor.shape)}, the mapping gives {want.shape}")
                    continue
                # bit patterns, not values: -0.0 is not 0.0 here, and bfloat16 has no numpy dtype
                bits = f"u{want.itemsize}"
                got = tensor.view({4: torch.int32, 2: torch.int16}[want.itemsize]).numpy().view(bits)
                differ = got != want.view(bits)
                if differ.any():
                    first = tuple(int(i) for i in np.argwhere(differ)[0])
                    problems.append(f"{name}: {int(differ.sum())} of {differ.size} values differ from the "
                                    f"checkpoint's float32 mapping cast to {dtype} (first at {list(first)})")
                setup.source.release(source_of[name])  # compared: its pages may leave memory
    except (OSError, SafetensorError) as exc:
        problems.append(f"model.safetensors: unreadable ({exc})")
    return problems


# Written by transformers' save_pretrained; says nothing about the network.
CONFIG_FIELDS_IGNORED = ("transformers_version",)


def check_config(setup: Setup) -> list[dict]:
    """Fields of the folder's config.json that differ from the config the converter derives from the checkpoint.

    Label names are the user's choice (`--labels`), so the folder's are kept when their number fits.
    """
    import json

    from convert.pipeline import derived_config

    folder = setup.folder_config
    names = None
    if setup.plan.num_labels is not None:
        id2label = folder.get("id2label")
        keys = [str(i) for i in range(setup.plan.num_labels)]
        names = ([str(id2label[k]) for k in keys] if isinstance(id2label, dict) and sorted(id2label) == sorted(keys)
                 else [f"LABEL_{i}" for i in range(setup.plan.num_labels)])
    expected = json.loads(json.dumps(derived_config(setup.paddle_config, setup.vocab, setup.detection.head,
                                                    setup.record["dtype"], names)))
    problems = []
    for key in sorted(set(expected) | set(folder)):
        if key in CONFIG_FIELDS_IGNORED or folder.get(key, ...) == expected.get(key, ...):
            continue
        problems.append({"field": key, "folder": folder.get(key, "(absent)"),
                         "expected": expected.get(key, "(absent)")})
    return problems


@dataclass(frozen=True)
class PaddleJob:
    """What the Paddle side needs, small and picklable: it runs in a child process (`PaddleSide`)."""

    checkpoint: Path
    config: object  # convert.paddle_config.ErnieConfig
    head: str  # the kind the folder was converted as (a `convert.heads.HEADS` name)
    batches: list[np.ndarray]  # converted-vocabulary ids of each probe batch
    long_chunks: np.ndarray | None
    kept: np.ndarray  # source id of each converted-vocabulary id
    type_guided: TypeGuidedJob | None  # folders with kept [IND] and class-token rows
    threads: int  # Paddle's CPU threads


def run_paddle(job: PaddleJob) -> _Outputs:
    """The original network on the probe batches (source vocabulary ids; logits back in kept columns)."""
    from convert.heads import detect_head
    from convert.paddle_reference import build_reference, run_reference
    from convert.pdparams import load_pdparams
    from convert.pipeline import as_float32

    clock = time.perf_counter()
    source = load_pdparams(job.checkpoint)
    tensors = {key: as_float32(array) for key, array in source.tensors.items()}
    detection = detect_head(set(tensors), job.config.architecture, job.head, str(job.checkpoint))
    # each weight's pages leave memory once Paddle holds its copy
    ernie, top = build_reference(tensors, job.config, detection, source.release)
    out = _Outputs(seconds={"build_paddle": time.perf_counter() - clock})
    clock = time.perf_counter()
    for ids in job.batches:
        ref = run_reference(ernie, top, job.kept[ids])
        logits = ref.logits[..., job.kept] if detection.head.logits == "vocabulary" else ref.logits
        out.batches.append((ref.hidden_states, ref.pooled, logits))
    if job.long_chunks is not None:
        out.long_logits = run_reference(ernie, top, job.kept[job.long_chunks]).logits.mean(axis=0)
    if job.type_guided is not None:
        out.type_guided = _run_paddle_type_guided(job.type_guided, detection, ernie, top)
    out.seconds["run_paddle"] = time.perf_counter() - clock
    return out


def _source_prompts(setup: Setup, bodies: list[list[int]], slots: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] body [IND] <slot> [SEP]` in source ids, padded with [PAD] (an empty slot is [PAD] too, which the
    reference hides from attention as PaddleNLP does); and each row's slot position."""
    vocab = setup.vocab
    kept = vocab.kept_source_ids
    pad = kept[vocab.id("[PAD]")]
    ids = np.full((len(bodies), max(len(b) for b in bodies) + 4), pad, dtype=np.int64)
    for row, (body, slot) in enumerate(zip(bodies, slots)):
        slot_id = pad if slot is None else vocab.source_tokens.index(slot)
        ids[row, : len(body) + 4] = [kept[vocab.id("[CLS]")], *(kept[i] for i in body), vocab.ind_source_id,
                                     slot_id, kept[vocab.id("[SEP]")]]
    return ids, np.array([len(body) + 2 for body in bodies])


@dataclass(frozen=True)
class TypeGuidedJob:
    """The type-guided prompts in source ids, made here for the Paddle side (see `TypeGuidedProbes`)."""

    prompts: list[np.ndarray]  # `[CLS] body [IND] <class> [SEP]` rows, one array per prompt set
    slot_prompts: np.ndarray | None  # `[CLS] body [IND] [PAD] [SEP]` rows (indicator only)
    slots: np.ndarray | None  # each slot row's slot position
    class_source_ids: tuple[int, ...]


def _type_guided_job(setup: Setup) -> TypeGuidedJob | None:
    probes = setup.type_guided
    if probes is None:
        return None
    prompts = [_source_prompts(setup, bodies, classes)[0] for bodies, classes in probes.prompt_sets]
    slot_prompts = slots = None
    if probes.bodies:
        slot_prompts, slots = _source_prompts(setup, probes.bodies, [None] * len(probes.bodies))
    return TypeGuidedJob(prompts, slot_prompts, slots, tuple(setup.vocab.class_source_ids))


def _run_paddle_type_guided(job: TypeGuidedJob, detection, ernie, top) -> dict:
    from convert.paddle_reference import run_reference

    out: dict[str, list[np.ndarray]] = {"type-guided hidden states": []}
    for prompts in job.prompts:
        ref = run_reference(ernie, top, prompts)
        out["type-guided hidden states"].append(ref.hidden_states[-1])
        if detection.head.logits == "sequence-labels":
            out.setdefault("type-guided logits", []).append(ref.logits)
    if job.slot_prompts is not None:
        logits = run_reference(ernie, top, job.slot_prompts).logits[np.arange(len(job.slots)), job.slots]
        scores = logits[:, list(job.class_source_ids)].astype(np.float64)  # the official -inf elsewhere
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        out["type probabilities"] = [scores / scores.sum(axis=1, keepdims=True)]
    return out


def _paddle_child(job: PaddleJob, connection) -> None:
    """Entry point of the child process: send back the outputs, or the exception."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(job.threads)  # read when Paddle loads, which it has not yet
    try:
        connection.send(("ok", run_paddle(job)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        connection.send(("error", exc))
    finally:
        connection.close()


class PaddleSide:
    """The Paddle side in a child process, started first: it runs on every core while this process
    imports torch, and this process loads the folder only once the child has finished. So the two
    frameworks never share a process (their threads and signal handlers stay apart), the import is
    not paid on top of the Paddle run, and the two full-size models are never in memory at the same
    time. (Running both sides at once was faster but peaked at 1.5 GiB; sharing the cores, their
    thread pools busy-waited against each other.) `result()` waits for the outputs; the child is
    killed if this process gives up."""

    def __init__(self, setup: Setup):
        import multiprocessing

        job = PaddleJob(setup.checkpoint, setup.paddle_config, setup.detection.head.name,
                        [ids for ids, _ in setup.batches], setup.long_chunks, np.asarray(setup.vocab.kept_source_ids),
                        _type_guided_job(setup), _cores())
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state is inherited
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_paddle_child, args=(job, send), daemon=True)
        self._process.start()
        send.close()

    def result(self) -> _Outputs:
        try:
            status, payload = self._receive.recv()
        except EOFError:
            self._process.join()
            raise ConversionError(f"the Paddle side of the verification stopped (exit code {self._process.exitcode}); "
                                  "run again with --debug, or check that paddlepaddle imports.") from None
        finally:
            self.stop()
        if status == "error":
            raise payload
        return payload

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()


def run_transformers(setup: Setup, mapping: dict[str, np.ndarray]) -> tuple[_Outputs, _Outputs | None, list[int]]:
    """The converted folder exactly as users load it (AutoTokenizer + the head's Auto class, float32).

    Returns its outputs; for a float16/bfloat16 folder, also the outputs of the same model (the
    folder's config.json) with `mapping`, the float32 weights, loaded in place of the stored ones
    (for a float32 folder the structure check proves the two identical, so one run serves both);
    and the probes on which its tokenizer disagrees with the official ids.
    """
    import transformers

    clock = time.perf_counter()
    transformers.logging.set_verbosity_error()  # load reports and progress bars would drown the table
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(setup.out_dir)
    # `.float()` rather than a dtype argument: the same on every transformers version
    model = getattr(transformers, setup.detection.head.auto_class).from_pretrained(setup.out_dir).float().eval()
    pooler = _pooler(model, setup.out_dir)
    seconds = {"load_transformers": time.perf_counter() - clock}
    # the side file is float32 whatever the folder's dtype: its outputs belong to the float32 run
    stored = _run_torch(setup, model, pooler, tokenizer, type_guided=setup.record["dtype"] == "float32")
    stored.seconds = {**seconds, "run_transformers": stored.seconds["run"]}
    if setup.detection.head.logits == "vocabulary":  # the card's widget shows the folder's outputs, as stored
        from convert.widget import fill_mask_examples

        stored.widget = fill_mask_examples(model, tokenizer)
    float32 = None
    if setup.record["dtype"] != "float32":
        clock = time.perf_counter()
        _load_float32(model, mapping, "bert.")
        if pooler is not getattr(getattr(model, "bert", model), "pooler", None):  # the stand-alone one
            _load_float32(pooler, mapping, "bert.pooler.")
        float32 = _run_torch(setup, model, pooler, tokenizer, type_guided=True)
        stored.seconds["run_transformers_float32"] = time.perf_counter() - clock
    mismatches = [i for i, (seq, ids) in enumerate(zip(setup.probes, setup.encoded))
                  if tokenizer(seq, truncation=True, max_length=MAX_NUCLEOTIDES + 2)["input_ids"] != ids]
    return stored, float32, mismatches


def _run_torch(setup: Setup, model, pooler, tokenizer, type_guided: bool) -> _Outputs:
    import torch

    from rnaernie.long_sequence import classify_long

    clock = time.perf_counter()
    out = _Outputs()
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
    if type_guided and setup.type_guided is not None:
        out.type_guided = _run_transformers_type_guided(setup, tokenizer, model)
    out.seconds["run"] = time.perf_counter() - clock
    return out


def _run_transformers_type_guided(setup: Setup, tokenizer, model) -> dict:
    """The kept rows as users reach them: read from the side file by `rnaernie.type_guided`."""
    import torch

    from rnaernie.type_guided import TypeIndicator, prompt_inputs
    from rnaernie.type_guided_rows import read_type_guided_rows

    probes = setup.type_guided
    rows = read_type_guided_rows(setup.out_dir)
    ind = torch.from_numpy(rows.input_ind)
    out: dict[str, list[np.ndarray]] = {"type-guided hidden states": []}
    for bodies, classes in probes.prompt_sets:
        slot_rows = [torch.from_numpy(rows.input_classes[rows.class_index(token)]) for token in classes]
        embeds, attention, _ = prompt_inputs(model, tokenizer, bodies, ind, slot_rows)
        with torch.no_grad():
            result = model(inputs_embeds=embeds, attention_mask=attention, token_type_ids=torch.zeros_like(attention),
                           output_hidden_states=True)
        out["type-guided hidden states"].append(result.hidden_states[-1].numpy())
        if setup.detection.head.logits == "sequence-labels":
            out.setdefault("type-guided logits", []).append(result.logits.numpy())
    if probes.bodies:
        out["type probabilities"] = [TypeIndicator(tokenizer, model, rows).probabilities_of_ids(probes.bodies).numpy()]
    return out


def _load_float32(module, mapping: dict[str, np.ndarray], prefix: str) -> None:
    """Replace every weight of `module` with the float32 mapping's; `prefix` completes names the module holds
    without it (a bare BertModel's `embeddings...`, a stand-alone pooler's `dense...`)."""
    import torch

    weights = {}
    for key in module.state_dict():
        name = key if key in mapping else prefix + key
        weights[key] = torch.from_numpy(np.array(mapping[name], dtype=np.float32))  # a copy: torch wants it writable
    module.load_state_dict(weights, strict=True)


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
    for name in ours.type_guided:  # absent from a half-precision folder's run as stored (see run_transformers)
        worst[name] = max((_diff(name, r, o, None) for r, o in zip(reference.type_guided[name], ours.type_guided[name])),
                          key=lambda diff: diff.max_abs)
        names.append(name)
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
            atol: float | None, say: Callable[[str], None], shown_as: Path | None = None) -> dict:
    """Run both models on `probes`; return the verification record (verdict + per-layer figures).

    Both models get the same ids, made by the official tokenization rules; the converted
    tokenizer is checked against those rules separately.
    """
    started = time.perf_counter()
    setup = prepare(Path(checkpoint), Path(out_dir), config=config, probes=probes, atol=atol)
    say(f"verifying {shown_as or out_dir} against {checkpoint} on {len(probes)} sequences")
    paddle_side = PaddleSide(setup)
    try:
        import torch  # noqa: F401 - its import overlaps the Paddle side; the model waits until it is done

        reference = paddle_side.result()
    finally:
        paddle_side.stop()
    mapping = float32_mapping(setup)
    structure, config_problems = check_structure(setup, mapping), check_config(setup)
    try:
        stored, float32, tokenizer_mismatches = run_transformers(setup, mapping)
    except Exception as exc:  # e.g. sizes in config.json that do not fit the weights: the checks say why
        if not config_problems and not structure:
            raise
        say(f"transformers cannot load {shown_as or out_dir} ({exc})")
        stored, float32, tokenizer_mismatches = _Outputs(), None, []
    signal_point("verifying")  # test hook (convert.interruptions): both sides have run
    ours = float32 or stored  # the float32 mapping's outputs
    layers = score(setup, reference, ours) if ours.batches else []
    import torch
    import transformers

    lengths = [len(e) - 2 for e in setup.encoded]
    logits = [layer for layer in layers if layer.name == "logits"]
    verification = {
        **verdict(setup, structure, config_problems, tokenizer_mismatches, layers,
                  None if float32 is None else score(setup, reference, stored)),
        "dtype": setup.record["dtype"],
        "max_abs_logit_diff": logits[0].max_abs if logits else None,
        "layers": _layer_rows(layers),
        "probe": {"sequences": len(probes), "min_length": min(lengths), "max_length": max(lengths),
                  "tokens": int(sum(len(e) for e in setup.encoded))},
        "source": {"file": Path(checkpoint).name, "sha256": setup.sha.result(),
                   "converted_from_sha256": setup.record["source"].get("sha256")},
        "tool_version": __version__,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "paddle": importlib.metadata.version("paddlepaddle"),
                     "torch": torch.__version__, "transformers": transformers.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {phase: round(seconds, 2) for phase, seconds in {**reference.seconds, **stored.seconds}.items()},
    }
    agreement = masked_argmax_agreement(setup, reference, ours)
    if agreement is not None:
        verification["masked_argmax_agreement"] = agreement
    if stored.widget is not None:
        verification["widget"] = stored.widget
    return verification


def verdict(setup: Setup, structure: list[str], config_problems: list[dict], tokenizer_mismatches: list[int],
            layers: list[LayerDiff], stored_layers: list[LayerDiff] | None) -> dict:
    """Each check's result, which failed, and where, in words (`failure`) for the CLI and the record."""
    parity_failing = [layer.name for layer in layers if not layer.max_abs <= setup.atol]
    checks = {
        "structure": {"passed": not structure, "dtype": setup.record["dtype"],
                      "tensors": len(setup.plan.target_shapes), "problems": structure},
        "config": {"passed": not config_problems, "problems": config_problems},
        "tokenizer": {"passed": not tokenizer_mismatches, "checked": len(setup.probes),
                      "mismatched_probes": tokenizer_mismatches},
        "parity": {"passed": bool(layers) and not parity_failing, "weights": "float32 mapping of the checkpoint",
                   "atol": setup.atol, "first_divergent_layer": parity_failing[0] if parity_failing else None,
                   "ran": bool(layers)},
    }
    if stored_layers is not None:
        rtol = STORED_RTOL[setup.record["dtype"]]
        stored_failing = [layer.name for layer in stored_layers if not layer.max_rel <= rtol]
        checks["stored_parity"] = {"passed": not stored_failing, "dtype": setup.record["dtype"], "rtol": rtol,
                                   "first_divergent_layer": stored_failing[0] if stored_failing else None,
                                   "layers": _layer_rows(stored_layers)}
    failed = [name for name, check in checks.items() if not check["passed"]]
    divergent = [checks[name]["first_divergent_layer"] for name in ("parity", "stored_parity") if name in failed]
    return {"verdict": "fail" if failed else "pass", "failed_checks": failed,
            "failure": "; ".join(_where(name, checks[name]) for name in failed) or None,
            "first_divergent_layer": divergent[0] if divergent else None, "atol": setup.atol, "checks": checks}


def _where(name: str, check: dict) -> str:
    """One failed check, in words, naming the tensor, config field or layer."""
    if name == "structure":
        shown = check["problems"][:3]
        more = f" (and {len(check['problems']) - 3} more)" if len(check["problems"]) > 3 else ""
        return "structure: " + "; ".join(shown) + more
    if name == "config":
        return "config: " + "; ".join(f"config.json {p['field']} is {p['folder']!r}, the checkpoint gives "
                                      f"{p['expected']!r}" for p in check["problems"])
    if name == "tokenizer":
        return f"tokenizer: disagrees with the official rules on probes {check['mismatched_probes']}"
    if name == "parity" and not check["ran"]:
        return "parity: not run, transformers cannot build a model from this config.json"
    if name == "parity":
        return f"parity: first divergence at {check['first_divergent_layer']} (atol {check['atol']:g})"
    return (f"{check['dtype']} folder as stored: first divergence at {check['first_divergent_layer']} "
            f"(max |diff| / max |reference| over rtol {check['rtol']:g})")


def _layer_rows(layers: list[LayerDiff]) -> list[dict]:
    return [{"name": l.name, "max_abs": l.max_abs, "max_rel": l.max_rel, "padded_max_abs": l.padded_max_abs,
             "worst_at": list(l.worst_at)} for l in layers]


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
    checks = verification["checks"]
    lines = [f"{'output':<26} {'max |diff|':>11} {'max rel':>10} {'padded':>10}  status (float32 mapping)"]
    for row in verification["layers"]:
        status = "ok" if row["max_abs"] <= verification["atol"] else "DIVERGES"
        lines.append(f"{row['name']:<26} {row['max_abs']:>11.2e} {row['max_rel']:>10.2e} "
                     f"{row['padded_max_abs']:>10.2e}  {status}")
    if "masked_argmax_agreement" in verification:
        lines.append(f"argmax agreement at [MASK] positions: {verification['masked_argmax_agreement']:.1%}")
    if "stored_parity" in checks:
        stored = checks["stored_parity"]
        worst = max(stored["layers"], key=lambda row: row["max_rel"])
        lines.append(f"{stored['dtype']} folder as stored: largest max |diff| {max(r['max_abs'] for r in stored['layers']):.2e}, "
                     f"largest relative {worst['max_rel']:.2e} at {worst['name']} (rtol {stored['rtol']:g})")
    lines.append("checks: " + ", ".join(f"{name} {'ok' if check['passed'] else 'FAILED'}" for name, check in checks.items()))
    return "\n".join(lines)


def verify_conversion(checkpoint: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                      probe: str | Path | None = None, atol: float | None = None, report: str | Path | None = None,
                      say: Callable[[str], None] = print, staged_for: str | Path | None = None) -> dict:
    """Check `out_dir` against `checkpoint`; save the verdict in OUT_DIR (and `report`), refresh the card.

    The verdict and the card replace the old ones together, or not at all. `staged_for`: `out_dir` is
    a staging folder that will become this OUT_DIR (the CLI verifies before publishing); messages
    name OUT_DIR, and writing the verdict is not yet the run's commit (`convert.writer.replace_files`).

    Returns the verification record when parity holds; raises `ParityError` (exit code 1 in the
    CLI) when it does not, `ConversionError` for bad input.
    """
    from convert.card import render_card
    from convert.records import read_conversion_record

    require_verify_dependencies()
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    shown_as = Path(staged_for) if staged_for else out_dir
    if not out_dir.is_dir():
        raise ConversionError(f"{out_dir} is not a folder; convert the checkpoint first (without --verify-only).")
    probes = builtin_probes() + (read_probe_file(Path(probe)) if probe else [])
    verification = compare(checkpoint, out_dir, config=config, probes=probes, atol=atol, say=say, shown_as=shown_as)
    source = verification["source"]
    if source["converted_from_sha256"] and source["sha256"] != source["converted_from_sha256"]:
        say(f"note: {checkpoint} is not the file {shown_as} was converted from (its sha256 differs)")
    if report:
        write_json(Path(report), verification)
    replace_files(out_dir, {VERIFICATION_RECORD: json_text(verification),
                            "README.md": render_card(read_conversion_record(out_dir), verification)},
                  commit=staged_for is None)
    say(summary_table(verification))
    if verification["verdict"] != "pass":
        raise ParityError(f"verification failed: {verification['failure']}. The figures are in "
                          f"{shown_as / VERIFICATION_RECORD}. Do not publish this folder.")
    say(f"verification OK: {verification['checks']['structure']['tensors']} tensors bit-exact, config.json as "
        f"derived, tokenizer as the official rules, every output within atol {verification['atol']:g} "
        f"({verification['seconds']:.1f} s)")
    return verification


def _cores() -> int:
    """The CPU cores this process may use (Paddle's thread count)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

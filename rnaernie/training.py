"""Fine-tuning a converted folder with transformers' `Trainer`: contact maps, or one label per sequence.

    train(TrainSettings(model="out/example", data="structures.dbn", output="out/contact", task="contact"))

* contact: `RnaErnieForContactPrediction` (rnaernie/contact.py) learns base pairs from a dot-bracket
  file or a folder of .bpseq / .ct files (read by rnaernie/structures.py). Labels are the pair matrix
  (1 paired, 0 not). `--eval` data is folded each epoch as `rnaernie fold` does (rnaernie/decoding.py,
  default threshold) and scored as `rnaernie score` does (mean F1, precision, recall, MCC per record).
* sequence: a stock `BertForSequenceClassification` learns the label of each record: FASTA whose
  header's second word is the label (`>id label`, as the nRC files), or CSV with `id,sequence,label`
  columns. Labels are numbered in order of first appearance in the training data (`id2label`).

Defaults follow the official fine-tuning scripts where they have one (`DEFAULTS`). Checkpoints go to
`OUT.checkpoints/` beside `OUT` once per epoch (or every `save_steps`); running the same command
again resumes from the last one. `OUT` itself appears only when training is complete (it is written
into a hidden staging folder and renamed), after which the checkpoints are removed. Under torchrun
every process trains (DDP through `Trainer`); only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

from rnaernie.errors import InputError, OutputError
from rnaernie.output import write_text
from rnaernie.training_data import (Example, contact_examples, sequence_examples, fingerprint, ContactCollator, SequenceCollator)

# The official scripts' settings. Contact: run_ssp.py (Adam at Paddle's default learning rate 1e-3, batch
# size 1, 50 epochs; it trained its structure head on the encoder's output). Sequence: run_seq_cls.py
# (AdamW, learning rate 1e-4, Paddle's default weight decay 0.01, batch size 50, 50 epochs, seed 0).
# Both keep the learning rate constant. The positive weight is ours: no official setting exists.
DEFAULTS = {
    "contact": {"epochs": 50, "batch_size": 1, "learning_rate": 1e-3, "weight_decay": 0.0},
    "sequence": {"epochs": 50, "batch_size": 50, "learning_rate": 1e-4, "weight_decay": 0.01},
}
DEFAULT_POSITIVE_WEIGHT = 10.0
RUN_FILE = "run.json"
INITIAL_FILE = "initial_eval.json"
HISTORY_FILE = "training.json"


class Task(str, Enum):
    """`--task`: what is trained, with the official script's settings (`DEFAULTS`)."""

    CONTACT = "contact"  # base pairs from structures
    SEQUENCE = "sequence"  # one label per sequence

    @classmethod
    def parse(cls, text: str) -> Task:
        if text not in [task.value for task in cls]:
            raise InputError(f"--task {text!r} is not known; use contact (base pairs from structures) or "
                             "sequence (one label per sequence).")
        return cls(text)

    def default(self, name: str):
        return DEFAULTS[self.value][name]

    def encoder(self, model):
        """The pre-trained part of the model being trained (what --freeze-encoder freezes)."""
        return model.encoder if self is Task.CONTACT else model.bert


@dataclass
class TrainSettings:
    """Everything one run depends on; the same settings resume the same run."""

    model: str
    data: str
    output: str
    task: Task | str  # a Task once `check_settings` has read it
    head: str = "hidden"
    epochs: Optional[int] = None
    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    positive_weight: float = DEFAULT_POSITIVE_WEIGHT
    freeze_encoder: bool = False
    eval_data: Optional[str] = None
    seed: int = 0
    device: str = "auto"
    save_steps: Optional[int] = None
    type_guided: Optional[str] = None  # sequence: the indicator folder (rnaernie/type_guided_training.py)
    top_k: int = 3
    long: str = "truncate"  # --type-guided: truncate (508 nt) or chunk (the lncRNA layout)
    quiet: bool = False
    derived: dict = field(default_factory=dict)  # filled in: defaults used, data fingerprints

    def resolved(self, name: str):
        value = getattr(self, name)
        return Task(self.task).default(name) if value is None else value


def check_settings(settings: TrainSettings) -> None:
    """Refuse what is wrong with the options before anything loads (one line each)."""
    from rnaernie.contact import HEAD_KINDS

    settings.task = Task.parse(settings.task)
    if settings.head not in HEAD_KINDS:
        raise InputError(f"--head {settings.head!r} is not known; use one of {', '.join(HEAD_KINDS)}.")
    for name, flag in (("epochs", "--epochs"), ("max_steps", "--max-steps"), ("batch_size", "--batch-size"),
                       ("save_steps", "--save-steps")):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise InputError(f"{flag} {value} must be at least 1.")
    if settings.learning_rate is not None and not settings.learning_rate > 0:
        raise InputError(f"--learning-rate {settings.learning_rate} must be above 0, e.g. 1e-4.")
    if settings.type_guided is not None:
        from rnaernie.type_guided import check_top_k

        if settings.task is not Task.SEQUENCE:
            raise InputError("--type-guided trains a sequence classifier; use it with --task sequence.")
        check_top_k(settings.top_k)  # the upper bound is the indicator's number of classes, read later
    from rnaernie.sequences import LongMode
    from rnaernie.type_guided import LONG_MODES

    if LongMode.parse(settings.long, LONG_MODES) is LongMode.CHUNK and settings.type_guided is None:
        raise InputError("--long chunk trains the type-guided way only; add --type-guided INDICATOR, or drop --long "
                         "(plain training reads the first 510 nt).")
    if not settings.positive_weight > 0:
        raise InputError(f"--positive-weight {settings.positive_weight} must be above 0 (1 is plain cross-entropy).")


def checkpoints_folder(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f"{output.name}.checkpoints"


# ---- evaluation ----------------------------------------------------------------------------------------------

def contact_scores(model, examples: list[Example], batch_size: int = 8) -> dict:
    """Fold each example as `rnaernie fold` does (default decoding) and score it; means over records."""
    import torch

    from rnaernie.decoding import decode
    from rnaernie.scoring import mean_scores, score_pairs

    collate = ContactCollator(model.tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    scores, losses = [], []
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        with torch.no_grad():
            out = model(**batch)
        losses.append(float(out.loss) * len(chunk))
        probabilities = model.pair_probabilities(batch["input_ids"], batch["attention_mask"]).cpu().numpy()
        for row, example in enumerate(chunk):
            n = len(example.input_ids) - 2
            sequence = model.tokenizer.decode(example.input_ids, skip_special_tokens=True)
            scores.append(score_pairs(decode(probabilities[row, :n, :n], sequence), example.pairs, n))
    model.train(was_training)
    means = mean_scores(scores)
    return {"loss": sum(losses) / len(examples), **{k: means[k] for k in ("f1", "precision", "recall", "mcc")}}


# ---- the run -------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    output: Path
    steps: int
    epochs: float
    seconds: float
    history: list
    skipped: int
    resumed_from: Optional[str]
    is_main: bool


def train(settings: TrainSettings, progress: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Fine-tune, write `settings.output` (rank 0), and return what happened. See the module docstring."""
    check_settings(settings)
    from rnaernie.output import check_output_folder
    from rnaernie.signals import sigterm_raises

    output = Path(settings.output)
    check_output_folder(output)
    import torch
    import transformers

    from rnaernie.model import pick_device, resolve_model

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    device = pick_device(settings.device)
    resolve_model(settings.model)
    transformers.set_seed(settings.seed)  # the new head's initial weights
    model, tokenizer, train_set, eval_set, extra = _build(settings)
    settings.derived = {"epochs": settings.resolved("epochs"), "batch_size": settings.resolved("batch_size"),
                        "learning_rate": settings.resolved("learning_rate"),
                        "weight_decay": settings.task.default("weight_decay"),
                        "train_fingerprint": fingerprint(train_set),
                        "eval_fingerprint": fingerprint(eval_set) if eval_set else None}
    if settings.freeze_encoder:
        settings.task.encoder(model).requires_grad_(False)

    checkpoints = checkpoints_folder(output)
    arguments = transformers.TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.resolved("epochs"),
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.resolved("batch_size"),
        per_device_eval_batch_size=max(settings.resolved("batch_size"), 8),
        learning_rate=settings.resolved("learning_rate"),
        weight_decay=settings.task.default("weight_decay"),
        lr_scheduler_type="constant",
        warmup_steps=0,
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=device == "cpu",
        # gloo for CPU processes under torchrun (set only then: in a single process it asks for a process group)
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        save_strategy="steps" if settings.save_steps else "epoch",
        save_steps=settings.save_steps or 500,
        save_total_limit=1,
        logging_strategy="epoch",
        eval_strategy="epoch" if eval_set else "no",
        report_to="none",
        disable_tqdm=settings.quiet or not sys.stderr.isatty(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        save_only_model=False,
        # only the attention head leaves weights unused (the last layer's feed-forward part); DDP must then look
        ddp_find_unused_parameters=settings.task is Task.CONTACT and settings.head == "attention",
    )
    resumed_from = _prepare_checkpoints(checkpoints, settings, arguments)
    trainer_class = extra.get("trainer_class") or (_contact_trainer_class() if settings.task is Task.CONTACT
                                                    else transformers.Trainer)
    trainer = trainer_class(
        model=model, args=arguments, train_dataset=train_set, eval_dataset=eval_set or None,
        data_collator=extra["collator"], compute_metrics=extra.get("compute_metrics"))
    _replace_console_callbacks(trainer, progress, bool(eval_set))
    started = time.perf_counter()
    with sigterm_raises():  # SIGTERM stops as Ctrl-C does (a host's own handler is kept): checkpoints kept, no output
        initial = _initial_evaluation(trainer, checkpoints) if eval_set else None
        trainer.train(resume_from_checkpoint=resumed_from)
    seconds = time.perf_counter() - started
    history = _history(trainer.state.log_history, initial, extra.get("history_names", {}))
    is_main = trainer.is_world_process_zero()
    if is_main:
        _write_output(output, model, tokenizer, settings, history, trainer.state, seconds, extra)
        shutil.rmtree(checkpoints, ignore_errors=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # else one rank aborts at exit under torchrun
    return TrainResult(output, trainer.state.global_step, trainer.state.epoch or 0.0, seconds, history,
                       extra.get("skipped", 0), resumed_from, is_main)


def _build(settings: TrainSettings):
    """(model, tokenizer, training examples, evaluation examples, extras) for the task."""
    if settings.task is Task.CONTACT:
        from rnaernie.contact import RnaErnieForContactPrediction

        model = RnaErnieForContactPrediction.from_pretrained(settings.model, head=settings.head)
        model.positive_weight = settings.positive_weight
        tokenizer = model.tokenizer
        train_set, skipped = contact_examples(settings.data, tokenizer)
        eval_set = contact_examples(settings.eval_data, tokenizer)[0] if settings.eval_data else []
        return model, tokenizer, train_set, eval_set, {"collator": ContactCollator(tokenizer.pad_token_id),
                                                       "skipped": skipped}
    if settings.type_guided:
        from rnaernie.type_guided_training import build

        return build(settings, _load_or_refuse)
    import numpy as np
    import transformers

    tokenizer = _load_or_refuse(settings.model, transformers.AutoTokenizer.from_pretrained)
    train_set = sequence_examples(settings.data, tokenizer)
    labels = list(dict.fromkeys(e.label for e in train_set))
    label2id = {label: i for i, label in enumerate(labels)}
    eval_set = sequence_examples(settings.eval_data, tokenizer) if settings.eval_data else []
    for example in eval_set:
        if example.label not in label2id:
            raise InputError(f"{settings.eval_data}: record {example.id!r} has label {example.label!r}, which the "
                             f"training data never uses; its labels are {', '.join(labels)}.")
    model = _load_or_refuse(settings.model, transformers.AutoModelForSequenceClassification.from_pretrained,
                            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
                            ignore_mismatched_sizes=True)  # a classifier with other labels gets a new layer

    def accuracy(prediction) -> dict:
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    return model, tokenizer, train_set, eval_set, {"collator": SequenceCollator(tokenizer.pad_token_id, label2id),
                                                   "compute_metrics": accuracy, "labels": labels}


def _load_or_refuse(model: str, loader, **options):
    from safetensors import SafetensorError

    from rnaernie.errors import ModelFolderError

    try:
        return loader(model, **options)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"cannot load {model} ({first_line}); pass a folder made by rnaernie-convert.") from None


def _contact_trainer_class():
    """`Trainer` whose evaluation folds and scores the eval records (contact maps do not batch into arrays)."""
    import transformers

    class ContactTrainer(transformers.Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
            model = self.accelerator.unwrap_model(self.model)
            scores = contact_scores(model, eval_dataset or self.eval_dataset, self.args.per_device_eval_batch_size)
            metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return ContactTrainer


def _prepare_checkpoints(checkpoints: Path, settings: TrainSettings, arguments) -> Optional[str]:
    """The checkpoint to resume from (None: start afresh); refuse checkpoints of a different run.

    Every rank reads the folder before any rank writes to it; rank 0 then records the run's settings.
    """
    from transformers.trainer_utils import get_last_checkpoint

    recorded = checkpoints / RUN_FILE
    wanted = _run_record(settings)
    resume = None
    if checkpoints.is_dir():
        try:
            previous = json.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != wanted:
            differences = sorted(k for k in set(wanted) | set(previous or {})
                                 if (previous or {}).get(k) != wanted.get(k))
            what = f"other settings ({', '.join(differences)})" if previous else "no record of its settings"
            raise OutputError(f"{checkpoints} holds checkpoints of another run, with {what}; run the command that "
                              "made them to resume it, or delete the folder to start afresh.")
        resume = get_last_checkpoint(str(checkpoints))
    _barrier()
    if arguments.process_index == 0:
        write_text(recorded, json.dumps(wanted, indent=1) + "\n")
    return resume


def _initial_evaluation(trainer, checkpoints: Path) -> dict:
    """The scores before training (epoch 0 of the curve), kept with the checkpoints for a resumed run."""
    saved = checkpoints / INITIAL_FILE
    if saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    metrics = _kept_metrics(trainer.evaluate())
    if trainer.is_world_process_zero():
        write_text(saved, json.dumps(metrics) + "\n")
    return metrics


def _run_record(settings: TrainSettings) -> dict:
    record = asdict(settings)
    for volatile in ("quiet", "device", "output"):  # these may change between an interrupted run and its resumption
        record.pop(volatile)
    record["model"] = str(Path(settings.model).resolve()) if Path(settings.model).is_dir() else settings.model
    return json.loads(json.dumps(record))


def _barrier() -> None:
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _replace_console_callbacks(trainer, progress: Optional[Callable[[str], None]], has_eval: bool) -> None:
    """Trainer prints raw log dicts; instead, one line per epoch through `progress` (rank 0), and tqdm's bar."""
    import transformers
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    had_bar = trainer.pop_callback(ProgressCallback) is not None

    class Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass  # the epoch lines say it

    class EpochLines(transformers.TrainerCallback):
        """`epoch 3 (step 18): loss 0.21, eval loss 0.19, f1 0.43, ...` once the epoch's last log has arrived."""

        pending: dict = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress is None or not state.is_world_process_zero or not logs:
                return
            self.pending.update(_kept_metrics(logs))
            if "loss" not in self.pending and state.global_step > 0 or has_eval and "eval_f1" not in self.pending \
                    and "eval_accuracy" not in self.pending:
                return  # the epoch's evaluation is still to come
            values = ", ".join(f"{'eval loss' if k == 'eval_loss' else k.removeprefix('eval_')} {v:.4g}"
                               for k, v in self.pending.items())
            progress(f"epoch {state.epoch or 0:g} (step {state.global_step}): {values}")
            self.pending = {}

    if had_bar:
        trainer.add_callback(Bar())
    trainer.add_callback(EpochLines())


def _kept_metrics(logs: dict) -> dict:
    """The training loss and the evaluation scores of one log entry (not timings or the learning rate)."""
    return {k: v for k, v in logs.items()
            if k == "loss" or (k.startswith("eval_") and "time" not in k and "per_second" not in k)}


def _history(log_history: list, initial: Optional[dict], names: dict) -> list:
    """One entry per epoch (epoch 0: the evaluation before training): the training loss and the eval scores,
    renamed by `names` where a task names them otherwise."""
    by_epoch: dict[float, dict] = {}
    for entry in ([{"epoch": 0.0, "step": 0, **initial}] if initial else []) + log_history:
        epoch = round(float(entry.get("epoch", 0.0)), 4)
        kept = {names.get(k, k): v for k, v in _kept_metrics(entry).items()}
        if kept:
            by_epoch.setdefault(epoch, {"epoch": epoch, "step": entry.get("step", 0)}).update(kept)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _write_output(output: Path, model, tokenizer, settings: TrainSettings, history: list, state, seconds: float,
                  extra: dict) -> None:
    """The finished folder, written whole into a staging folder and renamed (rank 0 only)."""
    import torch
    import transformers

    from rnaernie.output import atomic_folder

    record = {"task": settings.task.value, "base_model": settings.model, "data": settings.data,
              "eval_data": settings.eval_data, "settings": _run_record(settings), "steps": state.global_step,
              "epochs": state.epoch, "seconds": round(seconds, 2), "skipped_long_records": extra.get("skipped", 0),
              "history": history, "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    if "labels" in extra:
        record["labels"] = extra["labels"]
    with atomic_folder(output) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(str(staging))
        (staging / HISTORY_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")

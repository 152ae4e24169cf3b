"""The torch side: the converted folder exactly as users load it, on the same probes as the Paddle side."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.kinds import FolderModel
from convert.verify.prepare import MAX_NUCLEOTIDES, BatchOutputs, Outputs, Setup


@dataclass
class TorchRuns:
    """The folder's outputs as stored; for a float16/bfloat16 folder also with the float32 mapping loaded in
    place of the stored weights; and the probes on which its tokenizer disagrees with the official ids."""

    stored: Outputs
    float32: Outputs | None
    tokenizer_mismatches: list[int]

    @property
    def of_float32_mapping(self) -> Outputs:
        """For a float32 folder the structure check proves the two identical, so one run serves both."""
        return self.float32 or self.stored


def run_transformers(setup: Setup, mapping: dict[str, np.ndarray]) -> TorchRuns:
    """AutoTokenizer + the head's Auto class on the output folder, in float32."""
    import transformers

    head = setup.conversion.detection.head
    clock = time.perf_counter()
    transformers.logging.set_verbosity_error()  # load reports and progress bars would drown the table
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(setup.out_dir)
    # `.float()` rather than a dtype argument: the same on every transformers version
    model = getattr(transformers, head.auto_class).from_pretrained(setup.out_dir).float().eval()
    pooler = _pooler(model, setup.out_dir)
    seconds = {"load_transformers": time.perf_counter() - clock}
    # the side file is float32 whatever the folder's dtype: its outputs belong to the float32 run
    stored = _run_torch(setup, model, pooler, tokenizer, float32_run=setup.conversion.dtype == "float32")
    run = stored.seconds.pop("run")  # the checks' own timings stay, after it
    stored.seconds = {**seconds, "run_transformers": run, **stored.seconds}
    if head.widget is not None:  # the card's widget shows the folder's outputs, as stored
        clock = time.perf_counter()
        stored.widget = head.widget(model, tokenizer)
        stored.seconds["widget"] = time.perf_counter() - clock
    float32 = None
    if setup.conversion.dtype != "float32":
        clock = time.perf_counter()
        _load_float32(model, mapping, "bert.")
        if pooler is not getattr(getattr(model, "bert", model), "pooler", None):  # the stand-alone one
            _load_float32(pooler, mapping, "bert.pooler.")
        float32 = _run_torch(setup, model, pooler, tokenizer, float32_run=True)
        stored.seconds["run_transformers_float32"] = time.perf_counter() - clock
    mismatches = [i for i, (seq, ids) in enumerate(zip(setup.probes, setup.encoded))
                  if tokenizer(seq, truncation=True, max_length=MAX_NUCLEOTIDES + 2)["input_ids"] != ids]
    return TorchRuns(stored, float32, mismatches)


def _run_torch(setup: Setup, model, pooler, tokenizer, float32_run: bool) -> Outputs:
    """The probe batches and the kind's checks."""
    import torch

    clock = time.perf_counter()
    out = Outputs()
    with torch.no_grad():
        for batch in setup.batches:
            ids = torch.from_numpy(batch.ids)
            result = model(input_ids=ids, attention_mask=torch.from_numpy(batch.attention.astype(np.int64)),
                           token_type_ids=torch.zeros_like(ids), output_hidden_states=True)
            logits = getattr(result, "logits", None)
            out.batches.append(BatchOutputs([h.numpy() for h in result.hidden_states],
                                            pooler(result.hidden_states[-1]).numpy(),
                                            None if logits is None else logits.numpy()))
    folder = FolderModel(model, tokenizer, setup.out_dir, setup)
    for check in setup.conversion.detection.head.checks:  # outputs reading float32 side files: float32 run only
        inputs = setup.check_inputs[check.name]
        if inputs is not None and (float32_run or check.stored_too):
            started = time.perf_counter()
            out.extra.update(check.run_torch(inputs, folder))
            out.seconds[f"run_transformers: {check.name} check"] = time.perf_counter() - started
    out.seconds["run"] = time.perf_counter() - clock
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

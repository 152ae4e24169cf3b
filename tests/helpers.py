"""Test helpers: run a converted folder on ids of the original (39-token) vocabulary; start a command-line
process that sees signals as it would in a terminal; check a CLI's error line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np


def kept_source_ids(folder: Path) -> list[int]:
    return json.loads((folder / "conversion.json").read_text())["vocabulary"]["source_ids"]


def run_converted(folder: Path, source_input_ids: np.ndarray, pad_id: int = 0) -> dict[str, np.ndarray]:
    """hidden_states [n+1,B,L,H], pooled [B,H], logits (MLM: [B,L,V_new], classifiers: [B,C] or [B,L,C])."""
    import torch
    from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    kept = kept_source_ids(folder)
    to_new = {source: new for new, source in enumerate(kept)}
    ids = np.vectorize(to_new.__getitem__)(source_input_ids)
    architecture = AutoConfig.from_pretrained(folder).architectures[0]
    inputs = {"input_ids": torch.from_numpy(ids.astype(np.int64)),
              "attention_mask": torch.from_numpy((source_input_ids != pad_id).astype(np.int64))}
    base = AutoModel.from_pretrained(folder).float().eval()
    out = {}
    with torch.no_grad():
        encoded = base(**inputs, output_hidden_states=True)
        out["hidden_states"] = np.stack([h.numpy() for h in encoded.hidden_states])
        out["pooled"] = encoded.pooler_output.numpy()
        head = {"BertForMaskedLM": AutoModelForMaskedLM,
                "BertForSequenceClassification": AutoModelForSequenceClassification,
                "BertForTokenClassification": AutoModelForTokenClassification}.get(architecture)
        if head is not None:
            out["logits"] = head.from_pretrained(folder).float().eval()(**inputs).logits.numpy()
    return out


def signals_as_in_a_terminal() -> None:
    """`preexec_fn` of a command under test: a shell starts background jobs (`cmd &`, CI runners) with SIGINT
    ignored, and a process rightly keeps ignoring it; the command must see Ctrl-C as it would in a terminal."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def assert_one_error_line(result, *fragments) -> str:
    """A command's user error: exit code 2 and exactly one stderr line, `error: ...`, holding each fragment;
    returns that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 if hasattr(result, "exit_code") else result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def compare_folder(checkpoint, folder, *, config=None, probes=None, atol=None) -> dict:
    """The verifier's comparison of an existing folder with `checkpoint` (as `--verify-only` builds its conversion),
    without writing the verdict."""
    from pathlib import Path

    from convert.conversion import conversion_of_folder
    from convert.verify import builtin_probes, compare

    return compare(conversion_of_folder(checkpoint, folder, config), Path(folder), probes=probes or builtin_probes(),
                   atol=atol, say=lambda message: None)

"""Slow: `rnaernie embed` at full size (12 layers, hidden 768) equals the original within 2e-5 in float32.

The reference is real PaddleNLP (fixtures/golden/make_embed_golden.py run by the golden venv, when
it exists here) or else the project's own Paddle rebuild (convert.paddle_reference, itself tested
against PaddleNLP). Same records as the committed goldens (nRC records, three over 510 nt, tokenizer
edge cases), every pooling, layers 0, 6 and -1, truncate and chunk mode.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures.generate import write_checkpoint
from tests.conftest import GOLDEN, ROOT
from tests.helpers import kept_source_ids

pytestmark = pytest.mark.slow
PADDLENLP_PYTHON = Path(os.environ.get("RNAERNIE_PADDLENLP_PYTHON", "/work/pnlp-venv/bin/python"))
LAYERS = (0, 6, -1)
MODES = ("truncate", "chunk")
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def full_size(tmp_path_factory) -> tuple[Path, Path]:
    from convert.pipeline import convert_checkpoint

    base = tmp_path_factory.mktemp("full-embed")
    checkpoint = write_checkpoint(base / "checkpoint", preset="full", seed=5)
    convert_checkpoint(checkpoint, base / "converted")
    return checkpoint.parent, base / "converted"


@pytest.fixture(scope="module")
def reference(full_size, tmp_path_factory) -> dict[str, np.ndarray]:
    checkpoint_dir, converted = full_size
    if PADDLENLP_PYTHON.exists():
        out = tmp_path_factory.mktemp("reference") / "reference.npz"
        proc = subprocess.run([str(PADDLENLP_PYTHON), str(GOLDEN / "make_embed_golden.py"), "--checkpoint",
                               str(checkpoint_dir), "--layers", *map(str, LAYERS), "--write-to", str(out)],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return dict(np.load(out))
    pytest.importorskip("paddle")
    return paddle_rebuild_reference(checkpoint_dir, converted)


def paddle_rebuild_reference(checkpoint_dir: Path, converted: Path) -> dict[str, np.ndarray]:
    """The same arrays as make_embed_golden.py --write-to, from convert.paddle_reference."""
    from convert.paddle_config import find_config_file, load_paddle_config
    from convert.paddle_reference import build_encoder, run_reference
    from convert.pdparams import load_pdparams
    from convert.mapping import as_float32
    from convert.vocabulary import build_vocabulary, official_input_ids, official_vocab_path, read_vocab_file

    checkpoint = checkpoint_dir / "model_state.pdparams"
    tensors = {k: as_float32(v) for k, v in load_pdparams(checkpoint).tensors.items()}
    encoder = build_encoder(tensors, load_paddle_config(find_config_file(checkpoint)), "ernie.")
    vocab = build_vocabulary(read_vocab_file(official_vocab_path()))
    to_source = np.array(kept_source_ids(converted))
    golden = np.load(GOLDEN / "embed-pooled.npz")
    arrays = {"ids": golden["ids"], "sequences": golden["sequences"]}
    for mode in MODES:
        per_record = []
        for sequence in golden["sequences"].tolist():
            ids = official_input_ids(sequence, vocab, max_nucleotides=10**9)
            body = ids[1:-1][:510] if mode == "truncate" else ids[1:-1]
            per_record.append([[ids[0], *body[i:i + 510], ids[-1]] for i in range(0, len(body), 510)])
        rows = [row for record in per_record for row in record]
        batch = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, row in enumerate(rows):
            batch[i, :len(row)] = row
        hidden = np.stack(run_reference(encoder, None, to_source[batch]).hidden_states)
        for layer in LAYERS:
            cls, mean, states, index = [], [], [], 0
            for record in per_record:
                parts = [hidden[layer, index + j, 1:len(row) - 1] for j, row in enumerate(record)]
                cls.append(np.mean([hidden[layer, index + j, 0] for j in range(len(record))], axis=0))
                states.append(np.concatenate(parts))
                mean.append(states[-1].mean(axis=0))
                index += len(record)
            arrays[f"{mode}_layer{layer}_cls"] = np.stack(cls)
            arrays[f"{mode}_layer{layer}_mean"] = np.stack(mean)
            arrays[f"{mode}_layer{layer}_states"] = np.concatenate(states)
            arrays[f"{mode}_layer{layer}_offsets"] = np.cumsum([0] + [len(s) for s in states])
    return arrays


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", LAYERS)
def test_full_size_embeddings_match_the_original(full_size, reference, mode, layer):
    from rnaernie.embedding import Embedder

    records = list(zip(reference["ids"].tolist(), reference["sequences"].tolist()))
    for pooling in ("cls", "mean"):
        got = Embedder(full_size[1], pooling=pooling, layer=layer, long=mode, device="cpu").iter_embeddings(records)
        vectors = np.stack([vector for _, vector in got])
        worst = float(np.max(np.abs(vectors - reference[f"{mode}_layer{layer}_{pooling}"])))
        assert worst <= TOLERANCE, (pooling, worst)
    got = Embedder(full_size[1], pooling="none", layer=layer, long=mode, device="cpu").iter_embeddings(records)
    states = np.concatenate([matrix for _, matrix in got])
    assert states.shape == reference[f"{mode}_layer{layer}_states"].shape
    worst = float(np.max(np.abs(states - reference[f"{mode}_layer{layer}_states"])))
    assert worst <= TOLERANCE, ("none", worst)

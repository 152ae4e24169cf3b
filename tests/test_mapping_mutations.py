"""Break the mapping table itself, not a folder: only parity can tell.

A wrong row in `convert.heads` / `convert.mapping` makes the converter and the verifier's own
float32 mapping agree on the same wrong tensor, so the structure and config checks pass; parity,
which runs the folder against the original network rebuilt in Paddle, must fail and name the
output it breaks. The Paddle side never reads the table (it loads the checkpoint by Paddle's own
names), so patching the table in this process breaks exactly the side under test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import TINY_MLM, require

require("paddle")
require("transformers")

QUERY, KEY = "self_attn.q_proj.weight", "self_attn.k_proj.weight"


def _with_rows(monkeypatch, edit_row) -> None:
    """Replace the masked-LM entry's rows by `edit_row(row)` (a row, or the same row) in every layout."""
    import convert.heads as heads

    entry = heads.HEADS[heads.Kind.MASKED_LM]
    layouts = tuple(dataclasses.replace(layout, rows=tuple(edit_row(row) for row in layout.rows))
                    for layout in entry.layouts)
    monkeypatch.setitem(heads.HEADS, heads.Kind.MASKED_LM, dataclasses.replace(entry, layouts=layouts))


def swap_query_and_key_rows(monkeypatch):
    def edit(row):
        if row.source.endswith(QUERY):
            return dataclasses.replace(row, target=row.target.replace("query", "key"))
        if row.source.endswith(KEY):
            return dataclasses.replace(row, target=row.target.replace("key", "query"))
        return row
    _with_rows(monkeypatch, edit)


def miss_the_output_projection_transpose(monkeypatch):
    from convert.mapping import Transform

    _with_rows(monkeypatch, lambda row: dataclasses.replace(row, transform=Transform.COPY)
               if row.source.endswith("self_attn.out_proj.weight") else row)


def drop_a_decoder_vocabulary_row(monkeypatch):
    """The plan's decoder rows skip the row of A (every later token takes its neighbour's; the last repeats)."""
    import convert.mapping as mapping
    from convert.mapping import Transform

    original = mapping.apply_transform

    def apply(row, array, vocab, pad_id):
        out = original(row, array, vocab, pad_id)
        if row.transform is Transform.VOCAB_ROWS:
            a = vocab.id("A")
            kept = list(vocab.kept_source_ids)
            rows = kept[:a] + kept[a + 1:] + kept[-1:]
            out = np.array(array[rows])
        return out
    monkeypatch.setattr(mapping, "apply_transform", apply)


TABLE_MUTATIONS = {
    # name: (how to break the table, the output parity must name first)
    "query and key rows swapped in ENCODER_ROWS": (swap_query_and_key_rows, "layer 1"),
    "attention output projection not transposed": (miss_the_output_projection_transpose, "layer 1"),
    "a vocabulary row dropped from the decoder's plan": (drop_a_decoder_vocabulary_row, "logits"),
}


@pytest.mark.parametrize("name", list(TABLE_MUTATIONS))
def test_a_broken_mapping_table_fails_parity_alone_and_is_named(name, monkeypatch, tmp_path):
    from convert.pipeline import convert_checkpoint
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    break_table, first = TABLE_MUTATIONS[name]
    break_table(monkeypatch)
    convert_checkpoint(TINY_MLM["2.4"], tmp_path / "out")
    verification = compare_folder(TINY_MLM["2.4"], tmp_path / "out", probes=builtin_probes())
    assert verification["verdict"] == "fail"
    assert verification["failed_checks"] == ["parity"], verification["failure"]  # structure and config agree with it
    assert verification["first_divergent_layer"] == first
    assert f"parity: first divergence at {first}" in verification["failure"]


def test_the_intact_table_passes(tmp_path):
    """The control: the same steps without a mutation pass, so the failures above come from the table."""
    from convert.pipeline import convert_checkpoint
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    convert_checkpoint(TINY_MLM["2.4"], tmp_path / "out")
    verification = compare_folder(TINY_MLM["2.4"], tmp_path / "out", probes=builtin_probes())
    assert verification["verdict"] == "pass", verification["failure"]

"""The converted tokenizer (stock AutoTokenizer) gives the official RNAErnie ids."""

from __future__ import annotations

import json
import sys

import pytest

from convert.vocabulary import (
    build_vocabulary, official_input_ids, official_vocab_path, read_vocab_file, tokenizer_json,
)
from tests.conftest import GOLDEN, require

transformers = require("transformers")

VOCAB = build_vocabulary(read_vocab_file(official_vocab_path()))
SOURCE_TO_NEW = {source: new for new, source in enumerate(VOCAB.kept_source_ids)}


@pytest.fixture(scope="module")
def tokenizer(converted_dirs):
    return transformers.AutoTokenizer.from_pretrained(converted_dirs["2.4"])


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, truncation=True)["input_ids"]


def test_vocabulary_drops_ind_and_the_28_class_tokens():
    assert VOCAB.tokens == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEL]", "A", "U", "C", "G")
    assert len(VOCAB.dropped_tokens) == 29 and VOCAB.dropped_tokens[0] == "[IND]"
    assert VOCAB.kept_source_ids == (0, 1, 2, 3, 4, 5, 35, 36, 37, 38)


def test_reference_example_from_the_official_repository(tokenizer):
    # CGAUUCNCGUUCCC--CCGCCUCCA -> [2, 37, 38, 35, 36, 36, 37, 1, ...] in the official 39-token ids
    got = ids(tokenizer, "CGAUUCNCGUUCCC--CCGCCUCCA")
    official = [2, 37, 38, 35, 36, 36, 37, 1, 37, 38, 36, 36, 37, 37, 37, 1, 1, 37, 37, 38, 37, 37, 36, 37, 37, 35, 3]
    assert got == [SOURCE_TO_NEW[i] for i in official]


@pytest.mark.parametrize("text, expected", [
    ("acgu", "ACGU"), ("ACGT", "ACGU"), ("acgt", "ACGU"), ("AcGuT", "ACGUU"),
])
def test_case_and_t_are_folded(tokenizer, text, expected):
    assert ids(tokenizer, text) == ids(tokenizer, expected)


@pytest.mark.parametrize("text", ["N", "-", ".", "R", "Y", "K", "M", "S", "W", "B", "D", "H", "V", "x", "*", "1", "é"])
def test_everything_else_is_unk(tokenizer, text):
    assert ids(tokenizer, text) == [2, 1, 3]


def test_empty_and_whitespace(tokenizer):
    assert ids(tokenizer, "") == [2, 3]
    assert ids(tokenizer, "A C\tG\nU") == ids(tokenizer, "ACGU")


@pytest.mark.parametrize("length", [509, 510, 511, 1000])
def test_long_inputs_keep_the_first_510_nucleotides(tokenizer, length):
    seq = ("ACGU" * 300)[:length]
    got = ids(tokenizer, seq)
    assert len(got) == min(length, 510) + 2
    assert got == official_input_ids(seq, VOCAB)
    assert tokenizer.model_max_length == 512


def test_mask_in_text_and_decode(tokenizer):
    got = ids(tokenizer, "AC[MASK]GU")
    assert got == [2, 6, 8, VOCAB.id("[MASK]"), 9, 7, 3]
    assert tokenizer.decode(ids(tokenizer, "acgt"), skip_special_tokens=True) == "ACGU"
    assert tokenizer.mask_token == "[MASK]" and tokenizer.pad_token_id == 0


def test_batches_pad_with_zero_and_mask_it(tokenizer):
    batch = tokenizer(["ACGU", "A"], padding=True)
    assert batch["input_ids"][1] == [2, 6, 3, 0, 0, 0]
    assert batch["attention_mask"][1] == [1, 1, 1, 0, 0, 0]


# Where the converted tokenizer deliberately differs from the official batch converter:
# `[MASK]` written in text is the mask token (the official code inserts masks as ids only), and
# truncation keeps 510 nucleotides (the official code cuts the raw string at 510 characters,
# which counts whitespace too).
DOCUMENTED_DIFFERENCES = {"[MASK]": [2, 4, 3]}


def test_matches_real_paddlenlp_tokenization_cases(tokenizer):
    """Golden ids from the official path (PaddleNLP BasicTokenizer + vocab_1MER.txt)."""
    cases = json.loads((GOLDEN / "tokenizer_cases.json").read_text())
    assert len(cases) >= 20
    for case in cases:
        text = case["sequence"]
        expected = [SOURCE_TO_NEW[i] for i in case["input_ids"]]
        if text in DOCUMENTED_DIFFERENCES:
            expected = DOCUMENTED_DIFFERENCES[text]
        elif len(text) > 510 and any(c.isspace() for c in text):
            expected = official_input_ids("".join(text.split()), VOCAB)  # 510 nucleotides, not characters
            assert len(expected) > len(case["input_ids"])
        assert ids(tokenizer, text) == expected, case
        assert official_input_ids(text, VOCAB) == expected, case


def test_uppercase_rules_cover_every_length_changing_character():
    """The normalizer lists characters from the BMP only: prove none outside it changes ids."""
    for code in range(0x10000, sys.maxunicode + 1):
        upper = chr(code).upper()
        assert len(upper) == 1 and upper not in "ACGTU", hex(code)
    rules = {r["pattern"]["String"]: r["content"] for r in tokenizer_json(VOCAB)["normalizer"]["normalizers"]
             if r["type"] == "Replace"}
    assert rules["ß"] == "SS" and rules["t"] == "T" and rules["T"] == "U"

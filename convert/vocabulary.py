"""The RNAErnie vocabulary and a stock Hugging Face tokenizer that follows the official rules.

Official rules (RNAErnie `batch_converter` + PaddleNLP `BasicTokenizer(do_lower_case=False)`):
`upper()`, `U` -> `T`, one token per character, whitespace and control characters dropped,
anything not in the vocabulary -> `[UNK]`, `[CLS] ... [SEP]`, at most 510 nucleotides.

The converted vocabulary drops `[IND]` and the 28 ncRNA class tokens (used only by the
pre-training prompt and the type-guided fine-tuning step) and spells `T` as `U`, so the
tokenizer maps both `T` and `U` to the `U` id. The tokenizer files are plain JSON in the
`tokenizers` format, written without importing `tokenizers` or `transformers`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from convert.errors import ConfigError
from convert.writer import json_text
from rnaernie.type_guided_rows import IND_TOKEN

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DROPPED_SPECIAL_TOKENS = (IND_TOKEN,)
NUCLEOTIDES = ("A", "C", "G", "U")
MODEL_MAX_LENGTH = 512


@dataclass(frozen=True)
class Vocabulary:
    """The source vocabulary and which of its rows the converted model keeps."""

    source_tokens: tuple[str, ...]  # as in vocab_1MER.txt, e.g. (..., "A", "T", "C", "G")
    kept_source_ids: tuple[int, ...]  # rows of the Paddle embedding/decoder kept, in new-id order
    tokens: tuple[str, ...]  # converted vocabulary, new id order, T spelled U

    @property
    def dropped_tokens(self) -> tuple[str, ...]:
        kept = set(self.kept_source_ids)
        return tuple(t for i, t in enumerate(self.source_tokens) if i not in kept)

    @property
    def ind_source_id(self) -> int | None:
        """The source id of `[IND]`, whose row is kept aside for type guidance (None if the vocabulary lacks it)."""
        return self.source_tokens.index(IND_TOKEN) if IND_TOKEN in self.source_tokens else None

    @property
    def class_source_ids(self) -> tuple[int, ...]:
        """The source ids of the ncRNA class tokens (the dropped tokens other than `[IND]`), in source order."""
        kept = set(self.kept_source_ids)
        return tuple(i for i, t in enumerate(self.source_tokens) if i not in kept and t not in DROPPED_SPECIAL_TOKENS)

    @property
    def class_tokens(self) -> tuple[str, ...]:
        return tuple(self.source_tokens[i] for i in self.class_source_ids)

    def id(self, token: str) -> int:
        return self.tokens.index(token)


def official_vocab_path() -> Path:
    return Path(str(resources.files("convert") / "data" / "vocab_1MER.txt"))


def read_vocab_file(path: str | Path) -> tuple[str, ...]:
    """One token per line, id = line number (the last line has no newline in the official file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"vocab file {path} does not exist; check the --vocab path.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text vocabulary; pass vocab_1MER.txt with --vocab.") from None
    tokens = tuple(text.split("\n"))
    if tokens and tokens[-1] == "":
        tokens = tokens[:-1]
    if len(set(tokens)) != len(tokens) or "" in tokens:
        raise ConfigError(f"{path} has empty or repeated lines; pass the official vocab_1MER.txt with --vocab.")
    return tokens


def build_vocabulary(source_tokens: tuple[str, ...], source: str = "the vocabulary") -> Vocabulary:
    """Keep the special tokens (except [IND]) and the single nucleotides; drop the class tokens."""
    missing = [t for t in SPECIAL_TOKENS if t not in source_tokens]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}; pass the official vocab_1MER.txt with --vocab.")
    if "T" in source_tokens and "U" in source_tokens:
        raise ConfigError(f"{source} has both T and U; cannot spell T as U without inventing a token.")
    kept_ids, tokens = [], []
    for index, token in enumerate(source_tokens):
        is_special = token.startswith("[") and token.endswith("]")
        if token in DROPPED_SPECIAL_TOKENS or (not is_special and len(token) != 1):
            continue  # [IND] and the ncRNA class tokens
        kept_ids.append(index)
        tokens.append("U" if token == "T" else token)
    absent = [n for n in NUCLEOTIDES if n not in tokens]
    if absent:
        raise ConfigError(
            f"{source} has no single-nucleotide token for {', '.join(absent)}; only the 1-mer vocabulary "
            "(vocab_1MER.txt) is supported."
        )
    return Vocabulary(tuple(source_tokens), tuple(kept_ids), tuple(tokens))


def _uppercase_rules(single_char_tokens: set[str]) -> list[dict]:
    """`str.upper()` as normalizer rules, for the characters where it changes the token ids:
    those whose uppercase is a vocabulary character (`a` -> `A`) and those whose uppercase is
    longer than one character (`ß` -> `SS`), which change the token count. All such characters
    lie in the Basic Multilingual Plane (checked by the tests)."""
    rules = []
    for code in range(0x10000):
        char = chr(code)
        upper = char.upper()
        if upper != char and (len(upper) > 1 or upper in single_char_tokens):
            rules.append({"type": "Replace", "pattern": {"String": char}, "content": upper})
    return rules


def tokenizer_json(vocab: Vocabulary) -> dict:
    """A `tokenizer.json` (tokenizers format 1.0) reproducing the official tokenization."""
    ids = {token: i for i, token in enumerate(vocab.tokens)}
    special = [t for t in vocab.tokens if t.startswith("[") and t.endswith("]")]

    def piece(kind: str, name: str, type_id: int = 0) -> dict:
        return {kind: {"id": name, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in special
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                # drop control characters and turn every whitespace into a space, as BasicTokenizer does
                {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False,
                 "strip_accents": False, "lowercase": False},
                *_uppercase_rules({t for t in vocab.tokens if len(t) == 1} | {"T"}),
                {"type": "Replace", "pattern": {"String": "T"}, "content": "U"},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": False},
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("SpecialToken", "[CLS]"), piece("Sequence", "A"), piece("SpecialToken", "[SEP]")],
            "pair": [piece("SpecialToken", "[CLS]"), piece("Sequence", "A"), piece("SpecialToken", "[SEP]"),
                     piece("Sequence", "B", 1), piece("SpecialToken", "[SEP]", 1)],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "[UNK]"},
    }


def tokenizer_config(vocab: Vocabulary) -> dict:
    extra = [t for t in vocab.tokens if t.startswith("[") and t.endswith("]") and t not in SPECIAL_TOKENS]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        **special_tokens_map(),
        "additional_special_tokens": extra,
    }


def special_tokens_map() -> dict:
    return {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
            "mask_token": "[MASK]"}


def tokenizer_files(vocab: Vocabulary) -> dict[str, str]:
    """File name -> text, for the output folder."""
    return {
        "tokenizer.json": json_text(tokenizer_json(vocab)),
        "tokenizer_config.json": json_text(tokenizer_config(vocab)),
        "special_tokens_map.json": json_text(special_tokens_map()),
        "vocab.txt": "\n".join(vocab.tokens) + "\n",
    }


def official_input_ids(sequence: str, vocab: Vocabulary, max_nucleotides: int = MODEL_MAX_LENGTH - 2) -> list[int]:
    """The official tokenization, in the converted ids: the reference for tests and the verifier.

    Like the converted tokenizer (and any Hugging Face tokenizer), special tokens written in the
    text (`[MASK]`) are read as themselves; the official code only ever inserts them as ids.
    """
    ids = {token: i for i, token in enumerate(vocab.tokens)}
    specials = [t for t in vocab.tokens if t.startswith("[") and t.endswith("]")]
    pattern = re.compile("|".join(re.escape(t) for t in specials))
    body: list[int] = []
    position = 0
    for match in [*pattern.finditer(sequence), None]:
        text = sequence[position: match.start() if match else len(sequence)]
        for char in text.upper().replace("T", "U"):
            if not char.isspace() and _is_kept_char(char):
                body.append(ids.get(char, ids["[UNK]"]))
        if match:
            body.append(ids[match.group()])
            position = match.end()
    return [ids["[CLS]"], *body[:max_nucleotides], ids["[SEP]"]]


def _is_kept_char(char: str) -> bool:
    """BasicTokenizer's clean step drops NUL, U+FFFD and control characters (tab/newline are whitespace)."""
    return char not in ("\x00", "\ufffd") and not unicodedata.category(char).startswith("C")

"""Training data for `rnaernie train`: records read into `Example`s, and the collators that batch them.

* contact: structures (rnaernie/structures.py) of at most 510 nt; labels are the pair matrix.
* sequence: FASTA whose header's second word is the label (`>id label`, as the nRC files), or CSV with
  `id,sequence,label` columns; sequences cut to 510 nt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rnaernie.errors import InputError
from rnaernie.sequences import MAX_NUCLEOTIDES


@dataclass(frozen=True)
class Example:
    id: str
    input_ids: list[int]
    pairs: tuple = ()        # contact: 0-based (i, j) pairs
    label: Optional[str] = None  # sequence: the class name


def contact_examples(path: str, tokenizer) -> tuple[list[Example], int]:
    """(examples, how many records over 510 nt were left out) of a structure file or folder."""
    from rnaernie.structures import read_structures

    examples, skipped = [], 0
    for structure in read_structures(path):
        if len(structure.sequence) > MAX_NUCLEOTIDES:
            skipped += 1
            continue
        ids = tokenizer(structure.sequence)["input_ids"]
        if len(ids) != len(structure.sequence) + 2:
            raise InputError(f"record {structure.id!r} in {path}: its sequence does not read as one token per base "
                             "(whitespace inside?); write one letter per base.")
        examples.append(Example(structure.id, ids, pairs=structure.pairs))
    if not examples:
        raise InputError(f"{path} holds no structure of at most {MAX_NUCLEOTIDES} nt to train on; pass structures "
                         "that fit the model's 512 positions.")
    return examples, skipped


def sequence_examples(path: str, tokenizer, max_nucleotides: int = MAX_NUCLEOTIDES) -> list[Example]:
    """Labelled examples from FASTA (`>id label`) or CSV (`id,sequence,label`); sequences cut to 510 nt (or
    `max_nucleotides`)."""
    rows = _csv_rows(path) if Path(path).suffix.lower() == ".csv" else _fasta_rows(path)
    examples = [Example(record_id, tokenizer(sequence, truncation=True, max_length=max_nucleotides + 2)["input_ids"],
                        label=label) for record_id, sequence, label in rows]
    if not examples:
        raise InputError(f"{path} holds no records; pass FASTA with '>id label' headers or CSV with "
                         "id,sequence,label columns.")
    return examples


def _fasta_rows(path: str):
    from rnaernie.sequences import read_records

    rows = []
    for record in read_records(path):
        words = record.description.split()
        if not words:
            raise InputError(f"{path}: record {record.id!r} has no label; write the label as the header's second "
                             "word ('>id label'), or pass CSV with id,sequence,label columns.")
        rows.append((record.id, record.sequence, words[0]))
    return rows


def _csv_rows(path: str):
    from rnaernie.sequences import read_table

    columns = ("id", "sequence", "label")
    rows = []
    for values, where in read_table(path, columns):
        empty = [column for column in columns if not values[column]]
        if empty:
            raise InputError(f"{where}: the {empty[0]} is empty; give every row an id, a sequence and a label.")
        rows.append(tuple(values[column] for column in columns))
    return rows


def fingerprint(examples: list[Example]) -> str:
    """A digest of what the model will see, so a resumed run can tell its data has not changed."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.input_ids, list(example.pairs), example.label]).encode())
    return digest.hexdigest()


def _padded(examples: list[Example], pad_token_id: int):
    """input_ids and attention_mask [B, longest] of a batch, padded at the end."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, :len(example.input_ids)] = torch.tensor(example.input_ids)
        attention_mask[row, :len(example.input_ids)] = 1
    return input_ids, attention_mask


class ContactCollator:
    """Pads a batch; labels [B, L, L]: 1 at each pair (both triangles), 0 elsewhere, -100 outside a record."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[Example]) -> dict:
        import torch

        input_ids, attention_mask = _padded(examples, self.pad_token_id)
        width = input_ids.shape[1]
        labels = torch.full((len(examples), width - 2, width - 2), -100, dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example.input_ids) - 2
            labels[row, :n, :n] = 0
            for i, j in example.pairs:
                labels[row, i, j] = labels[row, j, i] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class SequenceCollator:
    def __init__(self, pad_token_id: int, label2id: dict[str, int]):
        self.pad_token_id = pad_token_id
        self.label2id = label2id

    def __call__(self, examples: list[Example]) -> dict:
        import torch

        input_ids, attention_mask = _padded(examples, self.pad_token_id)
        labels = torch.tensor([self.label2id[e.label] for e in examples], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

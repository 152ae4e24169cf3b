"""RNA secondary structures: one record type, and the three file formats it is read from and written to.

A `Structure` is an id, a sequence and its base pairs, 0-based `(i, j)` with `i < j`, each base in at
most one pair (pseudoknots allowed). Formats:

* dot-bracket (`.dbn`, `.db`), FASTA-like: `>id`, the sequence (one line or several), the structure on
  one line. `.` (or WUSS's `,:_-~`) is unpaired; `()` nest; `[] {} <>` then `Aa`, `Bb`, ... (upper case
  opens) are further levels for pseudoknots. Text after the structure (RNAfold's ` (-12.30)`) is
  ignored; a file without `>` holding one sequence and one structure is one record named after the file.
  bpRNA's `#Name: id` lines name the record that follows.
* BPSEQ: `i base j` a line, 1-based, `j = 0` unpaired; `#` lines, and `Key: value` lines before the
  first base (as in the CRW files), are skipped. The record is named after the file.
* CT: a header `N title`, then N lines `i base i-1 i+1 partner i`. A file with several structures
  gives `<stem>.1`, `<stem>.2`, ...; with one, `<stem>`.

Anything wrong is a `StructureError` naming the file and line (or the record): a structure whose
length differs from its sequence, unbalanced brackets, a base paired twice, an empty record.
Writing assigns bracket levels in 5'->3' order of the opening base: each pair takes the first bracket
kind under which it crosses no pair already placed, so nested structures use `()` alone and reading
the text back gives the same pairs.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rnaernie.errors import StructureError
from rnaernie.sequences import parse_header

BRACKETS = [("(", ")"), ("[", "]"), ("{", "}"), ("<", ">")] + list(zip(string.ascii_uppercase,
                                                                        string.ascii_lowercase))
OPENING = {open_: level for level, (open_, _) in enumerate(BRACKETS)}
CLOSING = {close: level for level, (_, close) in enumerate(BRACKETS)}
UNPAIRED = set(".,:_-~")
DBN_SUFFIXES = (".dbn", ".db")
STRUCTURE_SUFFIXES = DBN_SUFFIXES + (".bpseq", ".ct")

Pairs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Structure:
    """One RNA and its base pairs: 0-based `(i, j)`, `i < j`, sorted, each base at most once."""

    id: str
    sequence: str
    pairs: Pairs
    score: float | None = None  # a folding engine's score of the structure (written in the .dbn header)

    def __post_init__(self) -> None:
        pairs = tuple(sorted((min(i, j), max(i, j)) for i, j in self.pairs))
        object.__setattr__(self, "pairs", pairs)
        seen: dict[int, tuple[int, int]] = {}
        for pair in pairs:
            i, j = pair
            if i == j or i < 0 or j >= len(self.sequence):
                raise StructureError(f"record {self.id!r}: pair ({i + 1}, {j + 1}) is not a pair of two bases of "
                                     f"its {len(self.sequence)}-nt sequence.")
            for base in pair:
                if base in seen:
                    other = seen[base]
                    raise StructureError(f"record {self.id!r}: base {base + 1} is paired twice, with "
                                         f"{sum(other) - base + 1} and {sum(pair) - base + 1}; keep one pair.")
                seen[base] = pair

    @classmethod
    def from_dot_bracket(cls, id: str, sequence: str, text: str, where: str | None = None) -> "Structure":
        """Parse `text` (one character per base) as the structure of `sequence`."""
        where = where or f"record {id!r}"
        if len(text) != len(sequence):
            raise StructureError(f"{where}: the structure has {len(text)} characters but the sequence "
                                 f"{len(sequence)} nt; give one structure character per base.")
        return cls(id, sequence, parse_dot_bracket(text, where))

    def dot_bracket(self) -> str:
        return dot_bracket(self.pairs, len(self.sequence), f"record {self.id!r}")

    def partners(self) -> list[int]:
        """For each base, the 0-based index of its partner, or -1."""
        partner = [-1] * len(self.sequence)
        for i, j in self.pairs:
            partner[i], partner[j] = j, i
        return partner


def parse_dot_bracket(text: str, where: str = "structure") -> Pairs:
    """The pairs a dot-bracket string spells (pseudoknot levels included)."""
    stacks: dict[int, list[int]] = {}
    pairs = []
    for position, char in enumerate(text):
        if char in OPENING:
            stacks.setdefault(OPENING[char], []).append(position)
        elif char in CLOSING:
            stack = stacks.get(CLOSING[char])
            if not stack:
                raise StructureError(f"{where}: unbalanced brackets: {char!r} at position {position + 1} closes "
                                     "nothing; fix the structure.")
            pairs.append((stack.pop(), position))
        elif char not in UNPAIRED:
            raise StructureError(f"{where}: {char!r} at position {position + 1} is not a dot-bracket character "
                                 "(use . for unpaired, () [] {} <> Aa Bb ... for pairs).")
    for level, stack in stacks.items():
        if stack:
            raise StructureError(f"{where}: unbalanced brackets: {BRACKETS[level][0]!r} at position "
                                 f"{stack[-1] + 1} is never closed; fix the structure.")
    return tuple(sorted(pairs))


def dot_bracket(pairs: Iterable[tuple[int, int]], length: int, where: str = "structure") -> str:
    """Dot-bracket text of `pairs`; pseudoknotted pairs get `[]`, `{}`, `<>`, `Aa`, ... (module docstring)."""
    chars = ["."] * length
    # per level, the closing positions of its pairs still open, innermost last (they are nested)
    open_closings: list[list[int]] = []
    for i, j in sorted(pairs):
        for level, closings in enumerate(open_closings):
            while closings and closings[-1] < i:
                closings.pop()
            if not closings or closings[-1] > j:  # nested in (or beside) every open pair of this level
                break
        else:
            level = len(open_closings)
            if level == len(BRACKETS):
                raise StructureError(f"{where}: the pairs cross too much for dot-bracket (more than "
                                     f"{len(BRACKETS)} bracket kinds); write BPSEQ or CT instead.")
            open_closings.append([])
        open_closings[level].append(j)
        chars[i], chars[j] = BRACKETS[level]
    return "".join(chars)


# ---- reading ---------------------------------------------------------------------------------------------------

def read_structures(path: str | Path) -> list[Structure]:
    """Every record of a structure file, or of every structure file in a folder (by name order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in STRUCTURE_SUFFIXES)
        if not files:
            raise StructureError(f"{path} holds no {', '.join(STRUCTURE_SUFFIXES)} files; pass a folder of "
                                 "structure files or one file.")
    elif path.is_file():
        files = [path]
    else:
        raise StructureError(f"{path} does not exist; pass a .dbn, .bpseq or .ct file, or a folder of them.")
    structures: list[Structure] = []
    found_in: dict[str, Path] = {}
    for file in files:
        for structure in read_structure_file(file):
            if structure.id in found_in:
                raise StructureError(f"record {structure.id!r} appears twice ({found_in[structure.id]} and "
                                     f"{file}); give every record its own id.")
            found_in[structure.id] = file
            structures.append(structure)
    return structures


def read_structure_file(path: Path) -> list[Structure]:
    suffix = path.suffix.lower()
    if suffix not in STRUCTURE_SUFFIXES:
        raise StructureError(f"cannot tell the format of {path.name!r}; name it .dbn, .bpseq or .ct.")
    lines = list(_numbered_lines(path))
    if suffix == ".bpseq":
        return [_parse_bpseq(lines, path)]
    if suffix == ".ct":
        return _parse_ct(lines, path)
    return list(_parse_dbn(lines, path))


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise StructureError(f"{path}: not UTF-8 text; pass a dot-bracket, BPSEQ or CT text file.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        yield number, line.strip()


def _parse_dbn(lines: list[tuple[int, str]], path: Path) -> Iterator[Structure]:
    record_id, header_line, body = None, 0, []
    for number, line in lines:
        if not line:
            continue
        if line.startswith(">") or line.startswith("#Name:"):
            if record_id is not None or body:
                yield _dbn_record(record_id, header_line, body, path)
            header = line[1:] if line.startswith(">") else line[len("#Name:"):]
            record_id, header_line, body = parse_header(header, f"{path}, line {number}")[0], number, []
        elif not line.startswith("#"):
            body.append((number, line))
    if record_id is None and not body:
        raise StructureError(f"{path} holds no records; write '>id', the sequence, then the structure.")
    yield _dbn_record(record_id, header_line, body, path)


def _dbn_record(record_id: str | None, header_line: int, body: list[tuple[int, str]], path: Path) -> Structure:
    record_id = record_id or path.stem
    if not body:
        raise StructureError(f"{path}, line {header_line}: record {record_id!r} is empty; give its sequence and "
                             "structure, or remove it.")
    if len(body) == 1:
        raise StructureError(f"{path}, line {body[0][0]}: record {record_id!r} has no structure line; write the "
                             "sequence, then the structure on the next line.")
    number, last = body[-1]
    sequence = "".join(line for _, line in body[:-1])
    return Structure.from_dot_bracket(record_id, sequence, last.split()[0],
                                      f"{path}, line {number}: record {record_id!r}")


def _parse_bpseq(lines: list[tuple[int, str]], path: Path) -> Structure:
    bases: list[str] = []
    partner_of: list[int] = []  # 1-based, 0 unpaired
    line_of: list[int] = []
    for number, line in lines:
        if not line or line.startswith("#"):
            continue
        columns = line.split()
        if len(columns) != 3 or not (columns[0].isdigit() and columns[2].isdigit()):
            if not bases and ":" in line:  # a 'Filename: ...' style header
                continue
            raise StructureError(f"{path}, line {number}: expected 'index base partner', got {line[:40]!r}.")
        index, base, partner = int(columns[0]), columns[1], int(columns[2])
        if index != len(bases) + 1:
            raise StructureError(f"{path}, line {number}: base {index} where base {len(bases) + 1} was expected; "
                                 "number the bases 1, 2, 3, ... in order.")
        bases.append(base)
        partner_of.append(partner)
        line_of.append(number)
    if not bases:
        raise StructureError(f"{path}: the record is empty (no 'index base partner' lines).")
    return Structure(path.stem, "".join(bases), _pairs_from_partners(partner_of, line_of, path))


def _parse_ct(lines: list[tuple[int, str]], path: Path) -> list[Structure]:
    lines = [(number, line) for number, line in lines if line]
    records = []
    position = 0
    while position < len(lines):
        number, header = lines[position]
        words = header.split()
        if not words[0].isdigit():
            raise StructureError(f"{path}, line {number}: expected a CT header 'N title', got {header[:40]!r}.")
        length = int(words[0])
        body = lines[position + 1:position + 1 + length]
        if length == 0:
            raise StructureError(f"{path}, line {number}: the record is empty (0 bases).")
        if len(body) < length:
            raise StructureError(f"{path}, line {number}: the header announces {length} bases but "
                                 f"{len(body)} lines follow; fix the count or the file.")
        bases, partner_of, line_of = [], [], []
        for expected, (line_number, line) in enumerate(body, start=1):
            columns = line.split()
            if len(columns) < 5 or not (columns[0].isdigit() and columns[4].isdigit()):
                raise StructureError(f"{path}, line {line_number}: expected 'index base previous next partner "
                                     f"number', got {line[:40]!r}.")
            if int(columns[0]) != expected:
                raise StructureError(f"{path}, line {line_number}: base {columns[0]} where base {expected} was "
                                     "expected; number the bases 1, 2, 3, ... in order.")
            bases.append(columns[1])
            partner_of.append(int(columns[4]))
            line_of.append(line_number)
        records.append(("".join(bases), _pairs_from_partners(partner_of, line_of, path)))
        position += 1 + length
    if not records:
        raise StructureError(f"{path}: the file is empty; a CT file starts with a header 'N title'.")
    if len(records) == 1:
        return [Structure(path.stem, *records[0])]
    return [Structure(f"{path.stem}.{n}", *record) for n, record in enumerate(records, start=1)]


def _pairs_from_partners(partner_of: list[int], line_of: list[int], path: Path) -> Pairs:
    """Pairs from a 1-based partner column, refusing a base claimed twice or a one-sided pair."""
    length = len(partner_of)
    claimed_at: dict[int, int] = {}  # partner -> the 0-based base whose line names it
    for base, partner in enumerate(partner_of):
        if partner == 0:
            continue
        if partner > length or partner == base + 1:
            raise StructureError(f"{path}, line {line_of[base]}: base {base + 1} pairs with {partner}, which is "
                                 f"not another base of this {length}-nt record.")
        if partner in claimed_at:
            raise StructureError(f"{path}, line {line_of[base]}: base {partner} is paired twice, with "
                                 f"{claimed_at[partner] + 1} (line {line_of[claimed_at[partner]]}) and {base + 1}; "
                                 "keep one pair.")
        claimed_at[partner] = base
    pairs = []
    for base, partner in enumerate(partner_of):
        if partner == 0:
            continue
        if partner_of[partner - 1] != base + 1:
            raise StructureError(f"{path}, line {line_of[base]}: base {base + 1} pairs with {partner}, but base "
                                 f"{partner}'s line (line {line_of[partner - 1]}) says "
                                 f"{partner_of[partner - 1] or 'unpaired'}; make both lines agree.")
        if base + 1 < partner:
            pairs.append((base, partner - 1))
    return tuple(pairs)


# ---- writing ---------------------------------------------------------------------------------------------------

def format_dbn(structure: Structure) -> str:
    score = "" if structure.score is None else f" score={structure.score:.4f}"
    return f">{structure.id}{score}\n{structure.sequence}\n{structure.dot_bracket()}\n"


def format_bpseq(structure: Structure) -> str:
    partner = structure.partners()
    return "".join(f"{i + 1} {base} {partner[i] + 1}\n" for i, base in enumerate(structure.sequence))


def format_ct(structure: Structure) -> str:
    partner, length = structure.partners(), len(structure.sequence)
    lines = [f"{length}\t{structure.id}\n"]
    lines += [f"{i + 1}\t{base}\t{i}\t{i + 2 if i + 1 < length else 0}\t{partner[i] + 1}\t{i + 1}\n"
              for i, base in enumerate(structure.sequence)]
    return "".join(lines)


FORMATTERS = {"dbn": format_dbn, "bpseq": format_bpseq, "ct": format_ct}


def file_name(record_id: str, format: str) -> str:
    """The file a record gets in an output folder: its id, with characters a file name cannot hold replaced."""
    safe = "".join("_" if char in '/\\:\0' else char for char in record_id)
    if safe in ("", ".", ".."):
        safe = safe.replace(".", "_") or "_"
    return f"{safe}.{format}"


def claim_file_name(taken: dict[str, str], record_id: str, format: str) -> str:
    """`file_name`, refusing a name an earlier record of the same folder already has (`taken`: name -> id)."""
    name = file_name(record_id, format)
    if name in taken:
        raise StructureError(f"records {taken[name]!r} and {record_id!r} would both be written to {name}; give "
                             "them distinct ids.")
    taken[name] = record_id
    return name


def write_structures(path: str | Path, structures: Iterable[Structure], format: str | None = None) -> int:
    """Write `structures` to a .dbn file, or (format 'bpseq' or 'ct') one file each into folder `path`.

    The output appears whole or not at all; returns how many records were written.
    """
    from rnaernie.output import atomic_folder, atomic_output

    path = Path(path)
    count = 0
    if format in (None, "dbn"):
        with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
            for count, structure in enumerate(structures, start=1):
                handle.write(format_dbn(structure))
        return count
    taken: dict[str, str] = {}
    with atomic_folder(path) as folder:
        for count, structure in enumerate(structures, start=1):
            name = claim_file_name(taken, structure.id, format)
            (folder / name).write_text(FORMATTERS[format](structure), encoding="utf-8")
    return count

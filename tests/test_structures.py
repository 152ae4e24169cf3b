"""Structure files: dot-bracket (with pseudoknot levels), BPSEQ, CT and folders; every bad input is one named error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnaernie.errors import OutputError, StructureError
from rnaernie.structures import (Structure, dot_bracket, parse_dot_bracket, read_structures,
                                 write_structures)
from tests.conftest import ROOT, require

EXAMPLES = ROOT / "examples" / "rna.fa"


@st.composite
def pair_sets(draw, max_length=40):
    """Any set of base pairs (crossing or not) on a sequence of some length."""
    length = draw(st.integers(2, max_length))
    order = draw(st.permutations(range(length)))
    count = draw(st.integers(0, length // 2))
    return length, tuple(sorted((min(order[2 * k], order[2 * k + 1]), max(order[2 * k], order[2 * k + 1]))
                                for k in range(count)))


@st.composite
def nested_pair_sets(draw, max_length=40):
    length = draw(st.integers(2, max_length))
    pairs, stack = [], []
    for position in range(length):
        if stack and draw(st.booleans()):
            pairs.append((stack.pop(), position))
        elif draw(st.booleans()):
            stack.append(position)
    return length, tuple(sorted(pairs))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(pair_sets())
def test_dot_bracket_text_reads_back_as_the_same_pairs(case):
    length, pairs = case
    text = dot_bracket(pairs, length)
    assert len(text) == length
    assert parse_dot_bracket(text) == pairs


@settings(derandomize=True, max_examples=200, deadline=None)
@given(nested_pair_sets())
def test_nested_structures_use_round_brackets_only(case):
    length, pairs = case
    assert set(dot_bracket(pairs, length)) <= set("().")


def test_pseudoknots_take_the_next_bracket_kinds_in_order():
    # an H-type pseudoknot; then four stems, each crossing the ones of the kinds before it
    assert dot_bracket([(0, 6), (3, 9)], 10) == "(..[..)..]"
    assert dot_bracket([(0, 4), (2, 6), (3, 8), (1, 10)], 11) == "([[{).].}.]"
    many = [(k, 31 + k) for k in range(31)]  # 31 mutually crossing pairs: every kind and one more
    with pytest.raises(StructureError, match="record 'k': the pairs cross too much for dot-bracket"):
        Structure("k", "A" * 62, many).dot_bracket()
    letters = dot_bracket(many[:30], 61)
    assert letters[:5] == "([{<A" and letters[31:36] == ")]}>a" and parse_dot_bracket(letters) == tuple(many[:30])


def test_dot_bracket_file_forms(tmp_path):
    path = tmp_path / "mixed.dbn"
    path.write_text(">first some words\nGGGAAAUCC\n(((...)))\n"
                    ">wrapped\nGGGAAA\nUCCAA\n((.[..)).]. (-1.20)\n\n"
                    "#Name: bpRNA_1\n#Length: 5\nGAAAC\n(...)\n")
    first, wrapped, bprna = read_structures(path)
    assert first == Structure("first", "GGGAAAUCC", ((0, 8), (1, 7), (2, 6)))
    assert wrapped.id == "wrapped" and wrapped.sequence == "GGGAAAUCCAA"
    assert wrapped.pairs == ((0, 7), (1, 6), (3, 9))
    assert bprna.id == "bpRNA_1" and bprna.pairs == ((0, 4),)
    bare = tmp_path / "lonely.db"
    bare.write_text("GCAAAGC\n((...))\n")
    assert read_structures(bare) == [Structure("lonely", "GCAAAGC", ((0, 6), (1, 5)))]


def test_bpseq_and_ct_files(tmp_path):
    (tmp_path / "crw.bpseq").write_text("Filename: crw.bpseq\nOrganism: E. coli\n# a comment\n"
                                        "1 G 6\n2 A 0\n3 A 0\n4 A 0\n5 A 0\n6 C 1\n")
    (tmp_path / "two.ct").write_text("4 ENERGY = -1.0 first\n1 G 0 2 4 1\n2 A 1 3 0 2\n3 A 2 4 0 3\n4 C 3 0 1 4\n"
                                     "3 second\n1 G 0 2 0 1\n2 A 1 3 0 2\n3 C 2 0 0 3\n")
    (tmp_path / "notes.txt").write_text("not a structure")
    structures = read_structures(tmp_path)  # a folder: its structure files, by name
    assert [s.id for s in structures] == ["crw", "two.1", "two.2"]
    assert structures[0] == Structure("crw", "GAAAAC", ((0, 5),))
    assert structures[1].pairs == ((0, 3),) and structures[2].pairs == () and structures[2].sequence == "GAC"


@pytest.mark.parametrize("format", ["dbn", "bpseq", "ct"])
def test_each_format_written_reads_back_identical(tmp_path, format):
    records = [Structure("knot/1", "GGGAAACCCAGGGAUCCC", ((0, 8), (1, 7), (3, 12), (4, 11), (10, 17))),
               Structure("open", "ACGU", ())]
    target = tmp_path / ("out.dbn" if format == "dbn" else "out")
    assert write_structures(target, records, format) == 2
    read = read_structures(target)
    assert sorted(read, key=lambda s: s.id) == sorted(
        [Structure(r.id if format == "dbn" else r.id.replace("/", "_"), r.sequence, r.pairs) for r in records],
        key=lambda s: s.id)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_rnafold_output_of_real_records_reads_as_viennarnas_pairs(tmp_path):
    RNA = require("RNA")
    from rnaernie.sequences import read_records

    lines, expected = [], {}
    for record in read_records(EXAMPLES):
        sequence = record.sequence.upper().replace("T", "U")
        structure, energy = RNA.fold(sequence)
        lines.append(f">{record.id}\n{sequence}\n{structure} ({energy:6.2f})\n")
        table = RNA.ptable(structure)
        expected[record.id] = tuple((i - 1, table[i] - 1) for i in range(1, table[0] + 1) if table[i] > i)
    path = tmp_path / "rnafold.dbn"
    path.write_text("".join(lines))
    assert {s.id: s.pairs for s in read_structures(path)} == expected


# ---- bad input: one line naming the record or the file and line ------------------------------------------------

BAD_FILES = {
    "length.dbn": (">a\nGGGAAACCC\n(((...))\n", r"length.dbn, line 3: record 'a': the structure has 8 characters "
                                                  r"but the sequence 9 nt"),
    "close.dbn": (">b\nGAAACC\n(...))\n",
                  r"line 3: record 'b': unbalanced brackets: '\)' at position 6 closes nothing"),
    "open.dbn": (">c\nGAAACC\n((...)\n", r"line 3: record 'c': unbalanced brackets: '\(' at position 1 is never"),
    "knot.dbn": (">d\nGAAACC\n([...)\n", r"record 'd': unbalanced brackets: '\[' at position 2 is never closed"),
    "letter.dbn": (">e\nGAAAC\n(.*.)\n", r"record 'e': '\*' at position 3 is not a dot-bracket character"),
    "empty.dbn": (">f\n>g\nGC\n..\n", r"empty.dbn, line 1: record 'f' is empty"),
    "nostructure.dbn": (">h\nGCAU\n>i\nGC\n..\n", r"line 2: record 'h' has no structure line"),
    "twice.bpseq": ("1 G 3\n2 A 3\n3 C 1\n", r"twice.bpseq, line 2: base 3 is paired twice, with 1 \(line 1\) and 2"),
    "onesided.bpseq": ("1 G 3\n2 A 0\n3 C 0\n", r"line 1: base 1 pairs with 3, but base 3's line \(line 3\) says "
                                                r"unpaired"),
    "self.bpseq": ("1 G 1\n", r"line 1: base 1 pairs with 1, which is not another base"),
    "outside.bpseq": ("1 G 5\n2 C 0\n", r"line 1: base 1 pairs with 5, which is not another base of this 2-nt"),
    "order.bpseq": ("1 G 0\n3 C 0\n", r"line 2: base 3 where base 2 was expected"),
    "garbage.bpseq": ("1 G 0\nNote: a header line after the bases\n", r"line 2: expected 'index base partner'"),
    "none.bpseq": ("# only a comment\n", r"none.bpseq: the record is empty"),
    "short.ct": ("3 x\n1 G 0 2 3 1\n2 A 1 3 0 2\n", r"short.ct, line 1: the header announces 3 bases but 2 lines"),
    "zero.ct": ("0 nothing\n", r"zero.ct, line 1: the record is empty"),
    "twice.ct": ("3 x\n1 G 0 2 3 1\n2 A 1 3 3 2\n3 C 2 0 1 3\n", r"twice.ct, line 3: base 3 is paired twice"),
    "binary.dbn": (b"\xff\xfe>a\n", r"binary.dbn: not UTF-8 text"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_structure_files_are_one_error_naming_the_place(tmp_path, name):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StructureError, match=message) as caught:
        read_structures(path)
    assert "\n" not in str(caught.value)


def test_bad_paths_and_folders(tmp_path):
    with pytest.raises(StructureError, match="does not exist"):
        read_structures(tmp_path / "missing.dbn")
    with pytest.raises(StructureError, match="cannot tell the format of 'a.txt'"):
        (tmp_path / "a.txt").write_text("x")
        read_structures(tmp_path / "a.txt")
    with pytest.raises(StructureError, match="holds no .dbn, .db, .bpseq, .ct files"):
        read_structures(tmp_path)
    (tmp_path / "a.dbn").write_text(">x\nGC\n..\n")
    (tmp_path / "x.bpseq").write_text("1 G 0\n")
    with pytest.raises(StructureError, match=r"record 'x' appears twice \(.*a.dbn and .*x.bpseq\)"):
        read_structures(tmp_path)


def test_structure_records_refuse_impossible_pairs():
    with pytest.raises(StructureError, match="record 'r': base 2 is paired twice, with 1 and 3"):
        Structure("r", "GAC", ((0, 1), (1, 2)))
    with pytest.raises(StructureError, match=r"record 'r': pair \(1, 9\) is not a pair of two bases of its 3-nt"):
        Structure("r", "GAC", ((0, 8),))


def test_folder_output_is_refused_or_left_out_whole(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="exists and is not empty"):
        write_structures(busy, [Structure("a", "GC", ())], "ct")
    clash = [Structure("a/b", "GC", ()), Structure("a_b", "GC", ())]
    with pytest.raises(StructureError, match="records 'a/b' and 'a_b' would both be written to a_b.bpseq"):
        write_structures(tmp_path / "clash", clash, "bpseq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_structures(empty, [Structure("a", "GC", ())], "ct")
    assert [p.name for p in empty.iterdir()] == ["a.ct"]

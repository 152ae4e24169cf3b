"""The record plumbing every per-sequence command shares (`rnaernie.sequences`): `opened`, `Shard`,
`LongMode` and `read_table`. Fast: no model is loaded."""

from __future__ import annotations

import pytest

from rnaernie.errors import InputError
from rnaernie.sequences import LongMode, Shard, opened, read_table


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_the_shards_of_an_input_cover_it_once_and_index_back_into_it(n):
    items = [f"r{i}" for i in range(20)]
    seen = {}
    for k in range(1, n + 1):
        shard = Shard.parse(f"{k}/{n}")
        for position, item in enumerate(shard.select(items)):
            assert items[shard.index(position)] == item
            seen[item] = seen.get(item, 0) + 1
    assert seen == {item: 1 for item in items}


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(InputError, match="--shard"):
        Shard.parse(text)


def test_no_shard_is_the_whole_input():
    assert list(Shard.parse(None).select(range(5))) == [0, 1, 2, 3, 4] and str(Shard.parse("2/5")) == "2/5"


def test_long_modes_read_their_windows_and_error_refuses_only_long_records():
    assert list(LongMode.CHUNK.window_starts(1021, 510)) == [0, 510, 1020]
    assert list(LongMode.TRUNCATE.window_starts(1021, 510)) == [0]
    LongMode.ERROR.check("short", 510, 510)
    with pytest.raises(InputError, match="'long' has 511 nucleotides"):
        LongMode.ERROR.check("long", 511, 510)
    with pytest.raises(InputError, match="--long 'error' is not known; use one of truncate, chunk"):
        LongMode.parse("error", (LongMode.TRUNCATE, LongMode.CHUNK))


def test_opened_reads_the_first_item_at_once():
    def failing():
        raise InputError("unreadable")
        yield

    with pytest.raises(InputError):
        opened(failing())  # not at the first `next`, later: the command has not loaded a model yet
    assert list(opened(iter([]))) == [] and list(opened(iter([1, 2]))) == [1, 2]


def test_a_table_is_read_by_its_header_with_line_numbers(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("b\tlabel\ta\n2\t1\t1\n\n4\t\t3\n")
    assert list(read_table(tsv, ("a", "b"), ("label",))) == [
        ({"a": "1", "b": "2", "label": "1"}, f"{tsv}, line 2"), ({"a": "3", "b": "4", "label": ""}, f"{tsv}, line 4")]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(InputError, match="bad.csv, line 3 has 3 fields"):
        list(read_table(bad, ("a", "b")))
    with pytest.raises(InputError, match=r"bad.csv, line 1: no column c \(found: a, b\)"):
        list(read_table(bad, ("a", "c")))

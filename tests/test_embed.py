"""`rnaernie embed` and its Python API: exact against real PaddleNLP, every format, every bad input.

The goldens (fixtures/golden/embed-*.npz, made by make_embed_golden.py with PaddleNLP 2.8.1's
`ErnieModel` on fixtures/tiny-mlm-2.4) hold nRC records (three over 510 nt with the 511-nt edge
case) and tokenizer edge cases, for truncate and chunk mode, layers 0, 1 and -1.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rnaernie.cli import app
from rnaernie.errors import InputError
from tests.conftest import GOLDEN, TINY_MLM, require
from tests.helpers import assert_one_error_line

require("torch")  # the `embed` extra: without it every test here skips (fails under CI)
require("transformers")
TOLERANCE = 2e-5
POOLED = np.load(GOLDEN / "embed-pooled.npz")
IDS = POOLED["ids"].tolist()
SEQUENCES = POOLED["sequences"].tolist()
LONG_IDS = [i for i, s in zip(IDS, SEQUENCES) if len(s.replace(" ", "")) > 510]


@pytest.fixture(scope="module")
def model(converted_dirs) -> Path:
    return converted_dirs["2.4"]


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "records.fa"
    path.write_text("".join(f">{i} some description\n{s[:70]}\n{s[70:]}\n" if len(s) > 70 else f">{i}\n{s}\n"
                            for i, s in zip(IDS, SEQUENCES)))
    return path


def invoke(*args):
    return CliRunner().invoke(app, ["embed", *map(str, args)])


def tokens_golden(name: str) -> list[np.ndarray]:
    data = np.load(GOLDEN / name)
    offsets = data["offsets"]
    return [data["states"][offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_goldens_belong_to_the_fixture():
    digest = hashlib.sha256(TINY_MLM["2.4"].read_bytes()).hexdigest()
    assert POOLED["fixture_sha256"][0] == digest, "regenerate with fixtures/golden/make_embed_golden.py"
    assert len(LONG_IDS) == 3


# -- exactness against PaddleNLP ------------------------------------------------------------------

@pytest.mark.parametrize("long", ["truncate", "chunk"])
@pytest.mark.parametrize("layer", [0, 1, -1])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooled_embeddings_match_paddlenlp(model, pooling, layer, long):
    from rnaernie.embedding import Embedder

    embedder = Embedder(model, pooling=pooling, layer=layer, long=long, batch_tokens=1024)
    got = list(embedder.iter_embeddings(zip(IDS, SEQUENCES)))
    assert [i for i, _ in got] == IDS
    vectors = np.stack([v for _, v in got])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, POOLED[f"{long}_layer{layer}_{pooling}"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("long, layer, golden", [("chunk", -1, "embed-tokens-chunk-last.npz"),
                                                  ("truncate", 1, "embed-tokens-truncate-layer1.npz")])
def test_per_nucleotide_states_match_paddlenlp(model, fasta, tmp_path, long, layer, golden):
    out = tmp_path / "tokens.npz"
    result = invoke(model, fasta, "-o", out, "--pooling", "none", "--long", long, "--layer", layer)
    assert result.exit_code == 0, result.stderr
    saved = np.load(out)
    assert saved["ids"].tolist() == IDS and saved["index"].tolist() == list(range(len(IDS)))
    offsets = saved["offsets"]
    for i, expected in enumerate(tokens_golden(golden)):
        np.testing.assert_allclose(saved["embeddings"][offsets[i]:offsets[i + 1]], expected, rtol=0, atol=TOLERANCE)


def test_batch_budget_and_order_do_not_change_vectors(model):
    from rnaernie.embedding import Embedder

    reference = POOLED["chunk_layer-1_mean"]
    for budget in (512, 4096, 100_000):  # one segment a batch ... everything in one batch
        embedder = Embedder(model, pooling="mean", long="chunk", batch_tokens=budget)
        np.testing.assert_allclose(embedder.embed(SEQUENCES), reference, rtol=0, atol=TOLERANCE)
    reordered = Embedder(model, pooling="mean", long="chunk").embed(SEQUENCES[::-1])
    np.testing.assert_allclose(reordered, reference[::-1], rtol=0, atol=TOLERANCE)


def test_batches_respect_the_token_budget_with_little_padding(model, monkeypatch):
    from rnaernie.embedding import Embedder

    shapes = []
    original = Embedder._run
    monkeypatch.setattr(Embedder, "_run", lambda self, batch: (
        shapes.append([len(pending.segments[index]) for pending, index in batch]), original(self, batch))[1])
    Embedder(model, long="chunk", batch_tokens=2048).embed(SEQUENCES * 4)
    assert all(len(lengths) * max(lengths) <= 2048 for lengths in shapes)
    padded, real = sum(len(x) * max(x) for x in shapes), sum(sum(x) for x in shapes)
    assert padded <= 1.25 * real, (padded, real)  # length-sorted: 1.14 here; in input order it is 2.8


def test_tokenizer_rules_case_t_u_and_whitespace(model):
    import rnaernie

    vectors = rnaernie.embed(model, ["ACGUACGU", "acgtacgt", "ACG UAC\tGU", "AcGtAcGu"], pooling="mean")
    np.testing.assert_allclose(vectors[1:], vectors[[0, 0, 0]], rtol=0, atol=1e-6)


# -- the command's formats and options ------------------------------------------------------------

def test_formats_carry_the_same_vectors(model, fasta, tmp_path):
    pq = require("pyarrow.parquet")

    for suffix in (".npy", ".npz", ".parquet"):
        result = invoke(model, fasta, "-o", tmp_path / f"out{suffix}", "--pooling", "cls", "-q")
        assert result.exit_code == 0 and result.stderr == "", result.stderr
    expected = POOLED["truncate_layer-1_cls"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=TOLERANCE)
    archive = np.load(tmp_path / "out.npz")
    assert sorted(archive.files) == ["embeddings", "ids", "index"]
    np.testing.assert_array_equal(archive["embeddings"], np.load(tmp_path / "out.npy"))
    assert archive["ids"].tolist() == IDS
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["index", "id", "embedding"] and table["id"].to_pylist() == IDS
    np.testing.assert_array_equal(np.array(table["embedding"].to_pylist(), dtype=np.float32), archive["embeddings"])


def test_per_nucleotide_parquet_rows_are_matrices(model, fasta, tmp_path):
    pq = require("pyarrow.parquet")

    out = tmp_path / "tokens.parquet"
    assert invoke(model, fasta, "-o", out, "--pooling", "none", "--long", "chunk", "-q").exit_code == 0
    rows = pq.read_table(out)["embedding"].to_pylist()
    for row, expected in zip(rows, tokens_golden("embed-tokens-chunk-last.npz")):
        np.testing.assert_allclose(np.array(row, dtype=np.float32), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet"])
def test_shards_merge_into_the_whole(model, fasta, tmp_path, suffix):
    pq = require("pyarrow.parquet")

    whole = tmp_path / f"whole{suffix}"
    assert invoke(model, fasta, "-o", whole, "-q").exit_code == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"part{k}{suffix}"
        assert invoke(model, fasta, "-o", part, "--shard", f"{k}/3", "-q").exit_code == 0
        parts.append(part)
    # a record's vector may differ in the last bits between batch layouts, hence allclose
    if suffix == ".npy":  # the README's recipe: slice K holds rows K-1, K-1+N, ...
        merged = np.empty_like(np.load(whole))
        for k, part in enumerate(parts):
            merged[k::3] = np.load(part)
        np.testing.assert_allclose(merged, np.load(whole), rtol=0, atol=1e-5)
    elif suffix == ".npz":
        index = np.concatenate([np.load(p)["index"] for p in parts])
        assert sorted(index) == list(range(len(IDS)))
        vectors = np.concatenate([np.load(p)["embeddings"] for p in parts])[np.argsort(index)]
        np.testing.assert_allclose(vectors, np.load(whole)["embeddings"], rtol=0, atol=1e-5)
    else:
        pa = require("pyarrow")

        merged = pa.concat_tables([pq.read_table(p) for p in parts]).sort_by("index")
        expected = pq.read_table(whole)
        assert merged["index"].to_pylist() == list(range(len(IDS))) and merged["id"].equals(expected["id"])
        np.testing.assert_allclose(np.array(merged["embedding"].to_pylist()),
                                   np.array(expected["embedding"].to_pylist()), rtol=0, atol=1e-5)


def test_summary_reports_unknown_and_truncated(model, fasta, tmp_path):
    result = invoke(model, fasta, "-o", tmp_path / "out.npy")
    assert result.exit_code == 0
    assert f"embedded {len(IDS)} records" in result.stderr
    assert "[UNK]: 18 tokens in 2 records" in result.stderr  # 'NNNN' and the 14 unknowns of the IUPAC case
    assert "3 records over 510 nt cut to the first 510" in result.stderr
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal
    chunked = invoke(model, fasta, "-o", tmp_path / "chunk.npy", "--long", "chunk")
    assert "3 records over 510 nt embedded as windows of 510 nt" in chunked.stderr


def test_inputs_gzip_plain_and_stdin_agree(model, tmp_path):
    sequences = SEQUENCES[:4]
    plain = tmp_path / "list.txt"
    plain.write_text("\n".join(sequences) + "\n")
    zipped = tmp_path / "list.fa.gz"
    zipped.write_bytes(gzip.compress("".join(f">r{i}\n{s}\n" for i, s in enumerate(sequences)).encode()))
    assert invoke(model, plain, "-o", tmp_path / "plain.npz", "-q").exit_code == 0
    assert invoke(model, zipped, "-o", tmp_path / "zipped.npz", "-q").exit_code == 0
    from_stdin = CliRunner().invoke(app, ["embed", str(model), "-", "-o", str(tmp_path / "stdin.npz"), "-q"],
                                    input=plain.read_text())
    assert from_stdin.exit_code == 0, from_stdin.stderr
    expected = POOLED["truncate_layer-1_cls"][:4]
    for name, ids in (("plain", [f"seq{i}" for i in (1, 2, 3, 4)]), ("zipped", ["r0", "r1", "r2", "r3"]),
                      ("stdin", [f"seq{i}" for i in (1, 2, 3, 4)])):
        saved = np.load(tmp_path / f"{name}.npz")
        assert saved["ids"].tolist() == ids
        np.testing.assert_allclose(saved["embeddings"], expected, rtol=0, atol=TOLERANCE)


def test_python_api_arrays_and_iterator(model, fasta):
    import rnaernie

    vectors = rnaernie.embed(model, SEQUENCES[:3], layer=1)
    np.testing.assert_allclose(vectors, POOLED["truncate_layer1_cls"][:3], rtol=0, atol=TOLERANCE)
    with pytest.raises(InputError, match="list of sequences"):
        rnaernie.embed(model, "ACGU")  # a bare string would otherwise be four one-letter sequences
    matrices = rnaernie.embed(model, SEQUENCES[:2], pooling="none", layer=1)
    assert [m.shape for m in matrices] == [(len(s), 64) for s in SEQUENCES[:2]]
    streamed = list(rnaernie.iter_embed(model, fasta, pooling="mean", shard=(2, 5)))
    assert [i for i, _ in streamed] == IDS[1::5]
    np.testing.assert_allclose(np.stack([v for _, v in streamed]), POOLED["truncate_layer-1_mean"][1::5],
                               rtol=0, atol=TOLERANCE)


def test_records_stream_through_in_windows(model):
    """The first vectors come out long before the input ends: memory cannot grow with the input."""
    from rnaernie.embedding import Embedder

    def large_input():
        for n in range(5000):  # about 100 windows of 512-token batches
            yield f"r{n}", "ACGU" * 25
        raise AssertionError("the whole input was read before the first vector came out")
    got = Embedder(model, batch_tokens=512).iter_embeddings(large_input())
    assert next(got)[0] == "r0" and next(got)[0] == "r1"


# -- bad input: one line, exit 2, no output -------------------------------------------------------

def test_malformed_fasta_names_the_line(model, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGU\n>\nACGU\n")
    result = invoke(model, bad, "-o", tmp_path / "out.npy")
    assert_one_error_line(result, "line 3", "header without an id")
    assert not (tmp_path / "out.npy").exists() and leftovers(tmp_path) == []


def test_empty_record_stops_unless_skipped(model, tmp_path):
    fa = tmp_path / "empty.fa"
    fa.write_text(">a\nACGU\n>b\n>c\nGGCC\n")
    result = invoke(model, fa, "-o", tmp_path / "out.npz")
    assert_one_error_line(result, "'b' has no sequence", "--skip-empty")
    assert not (tmp_path / "out.npz").exists()
    assert invoke(model, fa, "-o", tmp_path / "out.npz", "--skip-empty", "-q").exit_code == 0
    assert np.load(tmp_path / "out.npz")["ids"].tolist() == ["a", "c"]


def test_long_error_names_the_first_long_record(model, fasta, tmp_path):
    result = invoke(model, fasta, "-o", tmp_path / "out.npy", "--long", "error")
    assert_one_error_line(result, repr(LONG_IDS[0]), "--long truncate", "--long chunk")
    assert not (tmp_path / "out.npy").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("args, fragments", [
    (["-o", "{tmp}/out.csv"], ["end the file name with .npy, .npz, .parquet"]),
    (["-o", "{tmp}/records.fa/out.npy"], ["records.fa is a file"]),
    (["-o", "{tmp}/out.npy", "--pooling", "none"], ["write .npz or .parquet"]),
    (["-o", "{tmp}/out.npy", "--pooling", "max"], ["--pooling 'max'"]),
    (["-o", "{tmp}/out.npy", "--long", "skip"], ["--long 'skip'"]),
    (["-o", "{tmp}/out.npy", "--shard", "4/3"], ["--shard 4/3"]),
    (["-o", "{tmp}/out.npy", "--layer", "3"], ["--layer 3 does not exist", "2 layers"]),
    (["-o", "{tmp}/out.npy", "--batch-tokens", "100"], ["--batch-tokens 100"]),
])
def test_bad_options_exit_2_without_output(model, fasta, tmp_path, args, fragments):
    result = invoke(model, fasta, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_error_line(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.fa"]


def test_missing_output_folders_are_created(model, fasta, tmp_path):
    result = invoke(model, fasta, "-o", tmp_path / "new" / "deeper" / "out.npy", "-q")
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "new" / "deeper" / "out.npy").shape[0] == len(IDS)
    assert leftovers(tmp_path / "new" / "deeper") == []


def test_unwritable_output_folder(model, fasta, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # a folder without write permission stops non-root users; sysfs refuses new files even to root
    target = locked if not os.access(locked, os.W_OK) else Path("/sys")
    if not target.is_dir():
        pytest.skip("no folder here refuses writing")
    result = invoke(model, fasta, "-o", target / "out.npy")
    assert_one_error_line(result, str(target), "folder you can write to")


def test_unusable_model_folder(fasta, tmp_path, converted_copy):
    assert_one_error_line(invoke(tmp_path / "nowhere", fasta, "-o", tmp_path / "out.npy"), "does not exist")
    (converted_copy / "model.safetensors").write_bytes(b"not safetensors")
    assert_one_error_line(invoke(converted_copy, fasta, "-o", tmp_path / "out.npy"), "cannot load")
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet"])
def test_interrupt_leaves_no_output(model, fasta, tmp_path, monkeypatch, suffix):
    from rnaernie.embedding import Embedder

    original = Embedder._run
    calls = []

    def interrupted(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, batch)
    monkeypatch.setattr(Embedder, "_run", interrupted)
    out = tmp_path / f"out{suffix}"
    result = invoke(model, fasta, "-o", out, "--batch-tokens", "512")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_sigint_from_outside_leaves_no_output(model, tmp_path):
    """A real Ctrl-C: stdin stays open, so the process is mid-output (its temporary file exists) when hit."""
    out = tmp_path / "out.npz"
    process = subprocess.Popen([sys.executable, "-m", "rnaernie.cli", "embed", str(model), "-", "-o", str(out),
                                "--batch-tokens", "512"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("ACGU" * 200 + "\n" * 1)  # one window's worth; the process then waits for more
    process.stdin.flush()
    deadline = time.monotonic() + 600
    while not leftovers(tmp_path) and time.monotonic() < deadline:  # waits for a state, not for time
        time.sleep(0.05)
    assert leftovers(tmp_path), "the temporary output never appeared"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130 and "interrupted" in stderr, stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_help_imports_nothing_heavy():
    code = ("import sys; from rnaernie.cli import app; import rnaernie; "
            "print([m for m in ('numpy', 'torch', 'transformers', 'pyarrow', 'tqdm') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    proc = subprocess.run([sys.executable, "-m", "rnaernie.cli", "embed", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--pooling" in proc.stdout and "--shard" in proc.stdout

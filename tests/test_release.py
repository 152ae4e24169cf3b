"""`rnaernie-convert RELEASE_DIR OUT_DIR` on a fake official release, the structure model paired with its backbone.

The fake release is laid out as the official download is (`output/<variant>/checkpoint_final/`,
`output_ft/<task>/<dataset>/<variant>/`), built from the committed fixtures: the tiny pre-trained model
with its `model_config.json`, the tiny classifiers and the tiny interaction model without one, and a
MixedFold checkpoint (fixtures/generate.py --head mixedfold). Everything runs through the real CLI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convert.heads import LNCRNA_LABELS, NRC_LABELS
from fixtures.generate import write_checkpoint
from tests.conftest import FIXTURES, TINY_MLM

PRETRAINED = "output/ERNIE/checkpoint_final"
NRC, LNC_H, LNC_M = "output_ft/seq_cls/nRC/ERNIE", "output_ft/seq_cls/lncRNA_H/ERNIE", "output_ft/seq_cls/lncRNA_M/ERNIE"
RR = "output_ft/rr_inter/MirTarRAW/ERNIE"
SSP = "output_ft/ssp/RNAStrAlign/ERNIE"
CONVERTED = (PRETRAINED, RR, LNC_H, LNC_M, NRC, SSP)  # in path order, as the table lists them


def cli(*args, interrupt: str | None = None):
    """The command in a fresh process; `interrupt`: POINT:SIGNAL, sent at that moment (see tests/interrupt.py)."""
    wrapper = ["-m", "tests.interrupt", interrupt] if interrupt else ["-m"]
    return subprocess.run([sys.executable, *wrapper, "convert.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def make_release(root: Path, interaction: bool = True) -> Path:
    """The official layout, one variant (ERNIE), from the fixtures; only the pre-trained folder has a config."""
    shutil.copytree(TINY_MLM["2.4"].parent, root / PRETRAINED)
    for folder, fixture in ((NRC, "tiny-seqcls-13"), (LNC_H, "tiny-seqcls-2"), (LNC_M, "tiny-seqcls-2"),
                            *(((RR, "tiny-rrinter"),) if interaction else ())):
        (root / folder).mkdir(parents=True)
        shutil.copy(FIXTURES / fixture / "model_state.pdparams", root / folder)
    write_checkpoint(root / SSP, head="mixedfold", seed=5)
    return root


def table_rows(stdout: str) -> dict[str, str]:
    return {line.split()[0]: line for line in stdout.splitlines() if line.startswith("output")}


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob(".*partial*")] + [p.name for p in out.rglob(".*.old-*")] if out.exists() else []


@pytest.fixture(scope="module")
def converted_release(tmp_path_factory):
    """The fake release converted and verified once (the slow part: six verifications)."""
    from tests.conftest import require

    require("paddle")
    require("transformers")
    root = tmp_path_factory.mktemp("release")
    release, out = make_release(root / "release"), root / "out"
    return release, out, cli(release, out, "--report", root / "report.json"), root / "report.json"


def test_the_whole_release_converts_and_verifies_in_one_command(converted_release):
    release, out, result, report = converted_release
    assert result.returncode == 0, result.stderr[-3000:]
    assert not error_lines(result)
    rows = table_rows(result.stdout)
    assert list(rows) == list(CONVERTED)  # every checkpoint found, in path order
    for folder in CONVERTED:
        assert " passed " in rows[folder], rows[folder]
        figures = re.findall(r"\d\.\de-\d\d", rows[folder])
        assert figures and all(float(f) < 1e-4 for f in figures), rows[folder]  # parity figures shown, within atol
        verification = json.loads((out / folder / "verification.json").read_text())
        assert verification["verdict"] == "pass"
        assert f"{max(r['max_abs'] for r in verification['layers']):.1e}" in rows[folder]
    kinds = {folder: json.loads((out / folder / "config.json").read_text())["architectures"][0] for folder in CONVERTED}
    assert kinds == {PRETRAINED: "BertForMaskedLM", RR: "BertModel", NRC: "BertForSequenceClassification",
                     LNC_H: "BertForSequenceClassification", LNC_M: "BertForSequenceClassification",
                     SSP: "BertModel"}  # the structure model: its pre-trained encoder, and the network beside it
    assert (out / RR / "interaction_head.safetensors").is_file() and (out / SSP / "mixedfold.safetensors").is_file()
    assert not leftovers(out)
    assert json.loads(report.read_text())["checkpoints"][0]["status"] == "passed"


def test_the_pretrained_config_serves_the_checkpoints_without_their_own(converted_release):
    release, out, result, _ = converted_release
    rows = table_rows(result.stdout)
    assert "its own config" in rows[PRETRAINED]
    pretrained = json.loads((out / PRETRAINED / "conversion.json").read_text())["paddle_config"]
    for folder in (RR, NRC, LNC_H, LNC_M):
        assert "the pre-trained ERNIE config" in rows[folder], rows[folder]
        record = json.loads((out / folder / "conversion.json").read_text())
        assert record["paddle_config"] | {"architecture": None} == pretrained | {"architecture": None}
        assert not (release / folder / "model_config.json").exists()  # the release itself is left as it was


def test_official_label_names_come_from_the_dataset_folder(converted_release):
    _, out, result, _ = converted_release
    rows = table_rows(result.stdout)
    for folder, dataset, names in ((NRC, "nRC", NRC_LABELS), (LNC_H, "lncRNA_H", LNCRNA_LABELS),
                                   (LNC_M, "lncRNA_M", LNCRNA_LABELS)):
        config = json.loads((out / folder / "config.json").read_text())
        assert list(config["id2label"].values()) == list(names)
        assert f"the official {dataset} label names (from the folder name)" in rows[folder]
    assert "label names" not in rows[PRETRAINED] + rows[RR]


def test_the_structure_model_is_converted_with_the_pretrained_checkpoint_of_its_variant(converted_release):
    release, out, result, report = converted_release
    row = table_rows(result.stdout)[SSP]
    assert " structure-model " in row and " passed " in row
    assert "with the pre-trained ERNIE checkpoint as its encoder" in row
    from convert.records import sha256_file

    record = json.loads((out / SSP / "conversion.json").read_text())
    assert record["head"] == "structure-model"
    assert record["backbone"]["sha256"] == sha256_file(release / PRETRAINED / "model_state.pdparams")
    verification = json.loads((out / SSP / "verification.json").read_text())
    assert verification["verdict"] == "pass"
    assert "structure: score_helix_stacking" in [row["name"] for row in verification["layers"]]
    saved = {entry["folder"]: entry for entry in json.loads(report.read_text())["checkpoints"]}
    assert saved[SSP]["status"] == "passed" and saved[SSP]["kind"] == "structure-model"


def test_the_structure_model_alone_through_the_pipeline_api_is_refused_naming_backbone(tmp_path):
    from convert.errors import NotConvertibleError
    from convert.pipeline import convert_checkpoint

    checkpoint = write_checkpoint(tmp_path / "ssp", head="mixedfold")
    with pytest.raises(NotConvertibleError, match="--backbone"):
        convert_checkpoint(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_with_an_encoder_and_stray_structure_tensors_is_not_taken_for_the_structure_model():
    from convert.heads import Kind, backbone_kind, detect_head
    from convert.pdparams import load_pdparams

    keys = set(load_pdparams(TINY_MLM["2.4"]).tensors)
    stray = keys | {"turner.score_stack", "zuker.net.embedding.weight"}
    assert backbone_kind(stray) is None and detect_head(stray).head.kind is Kind.MASKED_LM
    assert backbone_kind(keys | {"zuker.net.proj_head.dense.weight"}).kind is Kind.STRUCTURE_MODEL


def test_flags_apply_to_every_checkpoint_and_force_replaces_only_converted_folders(tmp_path):
    release, out = make_release(tmp_path / "release", interaction=False), tmp_path / "out"
    first = cli(release, out, "--no-verify", "--dtype", "float16")
    assert first.returncode == 0, first.stderr
    rows = table_rows(first.stdout)
    assert all(" converted " in rows[folder] for folder in (PRETRAINED, NRC, LNC_H, LNC_M))
    for folder in (PRETRAINED, NRC, LNC_H, LNC_M):
        assert json.loads((out / folder / "config.json").read_text())["torch_dtype"] == "float16"
        assert not (out / folder / "verification.json").exists()
    (out / "keep.txt").write_text("mine")
    again = cli(release, out, "--no-verify")
    assert again.returncode == 2 and "exists and is not empty" in error_lines(again)[0] and len(error_lines(again)) == 1
    forced = cli(release, out, "--no-verify", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "keep.txt").read_text() == "mine"  # --force replaces the converted folders, nothing else
    assert json.loads((out / NRC / "config.json").read_text())["torch_dtype"] == "float32"
    assert not leftovers(out)


def test_a_bad_checkpoint_fails_alone_and_the_run_exits_2(tmp_path):
    release, out = make_release(tmp_path / "release", interaction=False), tmp_path / "out"
    (release / LNC_H / "model_state.pdparams").write_bytes(b"not a pickle")
    result = cli(release, out, "--no-verify")
    assert result.returncode == 2, result.stderr
    rows = table_rows(result.stdout)
    assert " FAILED " in rows[LNC_H] and "model_state.pdparams" in rows[LNC_H]
    assert all(" converted " in rows[folder] for folder in (PRETRAINED, NRC, LNC_M))
    [line] = error_lines(result)
    assert "1 checkpoint(s) could not be converted" in line and LNC_H in line
    assert not (out / LNC_H).exists() and (out / NRC / "model.safetensors").is_file()


def test_a_classifier_in_the_wrong_dataset_folder_is_named(tmp_path):
    release, out = make_release(tmp_path / "release", interaction=False), tmp_path / "out"
    shutil.copy(FIXTURES / "tiny-seqcls-2" / "model_state.pdparams", release / NRC)  # 2 outputs under nRC
    result = cli(release, out, "--no-verify")
    assert result.returncode == 2
    assert "the classifier has 2 outputs but 13 label names were expected" in table_rows(result.stdout)[NRC]


def test_a_release_of_the_structure_model_alone_has_nothing_to_convert(tmp_path):
    write_checkpoint(tmp_path / "release" / SSP, head="mixedfold")
    out = tmp_path / "out"
    result = cli(tmp_path / "release", out, "--no-verify")
    assert result.returncode == 2
    row = table_rows(result.stdout)[SSP]
    assert " left out " in row and "no pre-trained ERNIE checkpoint to feed it" in row and "--backbone" in row
    assert "nothing to convert" in error_lines(result)[0]
    assert not out.exists()


@pytest.mark.parametrize("name, args, says", [
    ("no checkpoint", lambda r, o: [r / "output_ft", o], "holds no model_state.pdparams"),
    ("out inside the release", lambda r, o: [r, r / "converted"], "overlaps the release folder"),
    ("out is the release", lambda r, o: [r, r, "--force"], "overlaps the release folder"),
    ("labels", lambda r, o: [r, o, "--labels", r / "labels.txt"], "--labels applies to one checkpoint"),
    ("head", lambda r, o: [r, o, "--head", "encoder"], "--head applies to one checkpoint"),
    ("verify-only", lambda r, o: [r, o, "--verify-only"], "--verify-only applies to one checkpoint"),
    ("push", lambda r, o: [r, o, "--push-to-hub", "me/model"], "--push-to-hub applies to one checkpoint"),
    ("dtype", lambda r, o: [r, o, "--dtype", "int8"], "--dtype 'int8' is not supported"),
    ("config missing", lambda r, o: [r, o, "--config", r / "nowhere.json"], "does not exist"),
])
def test_bad_release_input_is_one_line_and_nothing_written(tmp_path, name, args, says):
    release = tmp_path / "release"
    write_checkpoint(release / PRETRAINED, seed=1)
    (release / "output_ft" / "empty").mkdir(parents=True)
    before = sorted(p.relative_to(release) for p in release.rglob("*"))
    out = tmp_path / "out"
    result = cli(*args(release, out), *([] if name == "verify-only" else ["--no-verify"]))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and not result.stdout.strip()
    [line] = error_lines(result)
    assert says in line and line == result.stderr.strip().splitlines()[-1]
    assert not out.exists()
    assert sorted(p.relative_to(release) for p in release.rglob("*")) == before


@pytest.mark.parametrize("point, signal, code, stays", [
    ("written", "SIGTERM", 143, "0 converted folder(s) stay"),  # the first folder is not committed yet
    ("published", "SIGINT", 130, "1 converted folder(s) stay in"),  # the signal comes during its commit
])
def test_an_interruption_keeps_the_finished_folders_and_never_a_half_written_one(tmp_path, point, signal, code, stays):
    release, out = make_release(tmp_path / "release", interaction=False), tmp_path / "out"
    result = cli(release, out, "--no-verify", interrupt=f"{point}:{signal}")
    assert result.returncode == code, result.stderr
    [line] = error_lines(result)
    assert stays in line and "Traceback" not in result.stderr
    if code == 130:
        assert PRETRAINED in line and (out / PRETRAINED / "conversion.json").is_file()
    else:
        assert "was not written" in line and not out.exists()  # nor the parent folders made for it
    assert not leftovers(out)
    assert not (out / NRC).exists()


def test_a_parity_failure_writes_the_folder_and_exits_1(tmp_path, monkeypatch):
    """The masked-LM entry's query and key rows swapped (only parity can tell): that folder fails, the rest pass."""
    import dataclasses

    from typer.testing import CliRunner

    import convert.heads as heads
    from convert.cli import app
    from tests.conftest import require

    require("paddle")
    require("transformers")
    entry = heads.HEADS[heads.Kind.MASKED_LM]

    def swap(row):
        for this, that in (("query", "key"), ("key", "query")):
            if row.target.endswith(f"attention.self.{this}.weight"):
                return dataclasses.replace(row, target=row.target.replace(this, that))
        return row

    layouts = tuple(dataclasses.replace(layout, rows=tuple(swap(row) for row in layout.rows))
                    for layout in entry.layouts)
    monkeypatch.setitem(heads.HEADS, heads.Kind.MASKED_LM, dataclasses.replace(entry, layouts=layouts))
    release, out = tmp_path / "release", tmp_path / "out"
    shutil.copytree(TINY_MLM["2.4"].parent, release / PRETRAINED)
    (release / NRC).mkdir(parents=True)
    shutil.copy(FIXTURES / "tiny-seqcls-13" / "model_state.pdparams", release / NRC)
    result = CliRunner().invoke(app, [str(release), str(out)])
    assert result.exit_code == 1, result.output
    rows = table_rows(result.output)
    assert "PARITY FAILED" in rows[PRETRAINED] and "first divergence at layer 1" in rows[PRETRAINED]
    assert " passed " in rows[NRC]
    assert json.loads((out / PRETRAINED / "verification.json").read_text())["verdict"] == "fail"
    assert "error: verification failed for 1 checkpoint(s) (output/ERNIE/checkpoint_final)" in result.output


def test_config_choice_for_checkpoints_without_their_own(tmp_path):
    """Same variant's pre-trained config; else the release's only one; else --config; else the kind asks for one."""
    release, out = tmp_path / "release", tmp_path / "out"
    shutil.copytree(TINY_MLM["2.4"].parent, release / PRETRAINED)
    for folder in ("output_ft/seq_cls/nRC/BERT", "output_ft/other/best"):
        (release / folder).mkdir(parents=True)
        shutil.copy(FIXTURES / "tiny-seqcls-13" / "model_state.pdparams", release / folder)
    shutil.copy(FIXTURES / "tiny-seqcls-13" / "model_state.pdparams", release / "output_ft/other/best/best.pdparams")
    result = cli(release, out, "--no-verify")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert "the pre-trained ERNIE config (no pre-trained BERT in the release)" in rows["output_ft/seq_cls/nRC/BERT"]
    best = [line for line in result.stdout.splitlines() if line.startswith("output_ft/other/best ")]
    assert len(best) == 2 and any(" left out " in line and "not named model_state.pdparams" in line for line in best)
    assert (out / "output_ft/other/best/model.safetensors").is_file()  # its model_state.pdparams is converted

    # two pre-trained variants that differ: a variant of neither has no config in the release
    write_checkpoint(release / "output/MOTIF/checkpoint_final", seed=2, num_attention_heads=2)
    shutil.rmtree(out)
    result = cli(release, out, "--no-verify")
    assert result.returncode == 2
    row = table_rows(result.stdout)["output_ft/seq_cls/nRC/BERT"]
    assert " FAILED " in row and "--config" in row
    # --config serves every checkpoint without its own
    shutil.rmtree(out)
    result = cli(release, out, "--no-verify", "--config", release / PRETRAINED / "model_config.json")
    assert result.returncode == 0, result.stdout
    assert "--config " in table_rows(result.stdout)["output_ft/seq_cls/nRC/BERT"]
    assert "its own config" in table_rows(result.stdout)["output/MOTIF/checkpoint_final"]

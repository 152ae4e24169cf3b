"""Publishing: `convert.hub.push_folder`, `rnaernie-push` and `rnaernie-convert --push-to-hub`.

Every push goes to `tests.fake_hub.FakeHub` on 127.0.0.1 (HF_ENDPOINT points at it); the network
is never used. Tokens come only from the test's own environment and a token path under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES, ROOT, TINY_MLM, require

huggingface_hub = require("huggingface_hub")
require("yaml")  # the stand-in Hub checks the card's front matter with it (huggingface_hub depends on it)
import huggingface_hub.constants  # noqa: E402 - submodules the tests patch
import huggingface_hub.hf_api  # noqa: E402
import huggingface_hub.utils._http  # noqa: E402
import huggingface_hub.utils._xet  # noqa: E402

from tests.fake_hub import GOOD_TOKEN, STORAGE, XET_TOKEN, FakeHub  # noqa: E402
from tests.helpers import signals_as_in_a_terminal  # noqa: E402

from convert import cli, hub_transport, push_cli  # noqa: E402
from convert.card import render_card  # noqa: E402
from convert.errors import HubError, MissingDependencyError  # noqa: E402
from convert.hub import push_folder, remote_state  # noqa: E402
from convert.hub_errors import hub_failure  # noqa: E402
from convert.hub_transport import HubLimits, HubWatch  # noqa: E402

REPO = "lab/rnaernie"
LOCAL_FILES = ["README.md", "config.json", "conversion.json", "model.safetensors", "special_tokens_map.json",
               "tokenizer.json", "tokenizer_config.json", "type_guided.safetensors", "verification.json", "vocab.txt"]


# ---------------------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def no_real_credentials(monkeypatch, tmp_path):
    """No token from the developer's machine, no proxy, a fresh HTTP client per test."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # CI may set it; the fake is local
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")  # a test that forgets the fake fails
    for name in [name for name in os.environ if name.startswith(("RNAERNIE_HUB_", "HF_XET_"))]:
        monkeypatch.delenv(name)
    # hf_xet reads its settings when its session starts: a fresh session per test, uncompressed chunks
    # (the stand-in storage reads them as plain bytes), its caches under tmp_path
    monkeypatch.setenv("HF_XET_XORB_COMPRESSION_POLICY", "none")
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "xet-cache"))
    huggingface_hub.utils._xet.abort_xet_session()
    huggingface_hub.close_session()
    yield
    huggingface_hub.close_session()
    huggingface_hub.utils._xet.abort_xet_session()


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@pytest.fixture
def verified(converted_copy):
    """A converted folder as the verifier leaves it after a pass: verification.json + re-rendered card."""
    write_verification(converted_copy, "pass")
    return converted_copy


def fake_verification(verdict: str) -> dict:
    """Shaped like convert.verify.compare's record, with plausible figures for the tiny fixture."""
    diverges = verdict == "fail"
    names = ["embeddings", "layer 1", "layer 2", "pooler", "logits"]
    layers = [{"name": name, "max_abs": 0.42 if diverges and name in ("layer 2", "pooler", "logits") else 3.1e-7,
               "max_rel": 2e-6, "padded_max_abs": 2.4e-7, "worst_at": [0, 3, 7]} for name in names]
    return {"verdict": verdict, "first_divergent_layer": "layer 2" if diverges else None, "atol": 1e-4,
            "dtype": "float32", "max_abs_logit_diff": layers[-1]["max_abs"], "layers": layers,
            "tokenizer": {"checked": 41, "mismatched_probes": []},
            "probe": {"sequences": 41, "min_length": 1, "max_length": 510, "tokens": 6150},
            "source": {"file": "model_state.pdparams", "sha256": None}, "tool_version": "0.1.0",
            "versions": {"paddle": "3.3.1", "torch": "2.13.0", "transformers": "5.24.0"},
            "masked_argmax_agreement": 1.0 if not diverges else 0.62}


def write_verification(folder, verdict: str) -> dict:
    """The verdict as the verifier records it, bound to the folder's files as they are now."""
    from convert.records import FILES_KEY, folder_digests

    verification = {**fake_verification(verdict), FILES_KEY: folder_digests(folder)}
    (folder / "verification.json").write_text(json.dumps(verification), encoding="utf-8")
    record = json.loads((folder / "conversion.json").read_text())
    (folder / "README.md").write_text(render_card(record, verification), encoding="utf-8")
    return verification


def fresh_process_env(hub, tmp_path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"),
            "NO_PROXY": "127.0.0.1", "PYTHONPATH": str(ROOT), "HF_XET_XORB_COMPRESSION_POLICY": "none"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_push(*args: str):
    return CliRunner().invoke(push_cli.app, [str(a) for a in args])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def error_line(stderr: str) -> str:
    """The one error line, which ends stderr (progress lines may come before it; no traceback)."""
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in stderr, stderr
    return lines[-1]


def claims_pushed(text: str) -> bool:
    return re.search(r"^pushed ", text, re.M) is not None


# ---------------------------------------------------------------------------------------- success

def test_api_push_sends_every_file_and_reports_the_commit(hub, verified):
    lines: list[str] = []
    result = push_folder(verified, REPO, token=GOOD_TOKEN, private=True, commit_message="RNAErnie base",
                         say=lines.append)

    remote = hub.files(REPO)
    assert sorted(remote) == LOCAL_FILES
    assert sha256(remote["model.safetensors"]) == sha256((verified / "model.safetensors").read_bytes())
    assert all(remote[name] == (verified / name).read_bytes() for name in LOCAL_FILES)
    assert [c.summary for c in hub.commits] == ["RNAErnie base"]
    assert hub.create_payloads == [{"name": "rnaernie", "organization": "lab", "visibility": "private",
                                    "type": "model"}]
    assert hub.repos[REPO].private
    assert {token for _, name, token in hub.requests if name not in STORAGE} == {GOOD_TOKEN}
    assert {token for _, name, token in hub.requests if name in STORAGE} == {XET_TOKEN}  # never the Hub token
    assert hub.unknown == []
    assert result.verified and result.changed and not result.dry_run
    assert result.commit_oid == hub.commits[0].oid
    assert result.files == {name: (verified / name).stat().st_size for name in LOCAL_FILES}
    assert lines[-1] == f"pushed 10 files to {hub.url}/{REPO} (commit {hub.commits[0].oid[:12]})"
    assert "parity-verified" in remote["README.md"].decode()


def test_cli_pushes_to_a_new_branch_with_the_token_from_hf_token(hub, verified, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    result = run_push(verified, REPO, "--revision", "dev")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"pushing 10 files (0.5 MB) to {hub.url}/{REPO}/tree/dev\n"  # progress: stderr
    assert sorted(hub.files(REPO, "dev")) == LOCAL_FILES
    assert hub.files(REPO, "main") == {}  # the branch got the files, main did not
    assert [(c.revision, c.summary) for c in hub.commits] == [
        ("dev", "RNAErnie BertForMaskedLM converted by rnaernie-convert 0.1.0 (parity verified)")]
    assert "visibility" not in hub.create_payloads[0]  # no --private: the namespace's default applies
    called = hub.endpoints_called()
    assert called[:5] == ["create", "branch", "info", "validate-yaml", "preupload"] and called[-1] == "commit"
    assert re.fullmatch(rf"pushed 10 files to {hub.url}/{REPO}/tree/dev \(commit [0-9a-f]{{12}}\)\n",
                        result.stdout)  # the result, alone on stdout


def test_cached_login_token_is_used(hub, verified):
    token_path = Path(huggingface_hub.constants.HF_TOKEN_PATH)  # under tmp_path (see no_real_credentials)
    token_path.parent.mkdir(parents=True)
    token_path.write_text(GOOD_TOKEN)
    result = run_push(verified, REPO)
    assert result.exit_code == 0, result.stderr
    assert {token for _, name, token in hub.requests if name not in STORAGE} == {GOOD_TOKEN}


def test_pushing_again_unchanged_makes_no_commit_and_says_so(hub, verified):
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    lines: list[str] = []
    again = push_folder(verified, REPO, token=GOOD_TOKEN, say=lines.append)
    assert len(hub.commits) == 1
    assert not again.changed and again.commit_oid == hub.commits[0].oid
    assert lines[-1].startswith(f"nothing to push: {hub.url}/{REPO} already has these 10 files")
    assert not claims_pushed("\n".join(lines))


def test_nothing_changed_is_told_by_the_commit_ids_not_by_a_log_line(hub, verified, monkeypatch):
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    deliver = logging.Logger.callHandlers  # no log line from huggingface_hub at all, whichever module logs it

    def drop_hub_records(logger, record):
        if not record.name.startswith("huggingface_hub"):
            deliver(logger, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", drop_hub_records)
    lines: list[str] = []
    again = push_folder(verified, REPO, token=GOOD_TOKEN, say=lines.append)
    assert not again.changed and len(hub.commits) == 1
    assert lines[-1].startswith("nothing to push: ")


def test_private_is_refused_for_an_existing_public_repo(hub, verified):
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    result = run_push(verified, REPO, "--token", GOOD_TOKEN, "--private")
    assert result.exit_code == 2
    assert error_line(result.stderr) == ("error: lab/rnaernie already exists and is public, so --private cannot apply. "
                                         "Nothing was pushed. Make it private in its settings on the Hub, or choose "
                                         "another name.")
    assert len(hub.commits) == 1


def test_push_without_hf_xet_uses_the_single_commit_path(hub, verified, monkeypatch):
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    assert sorted(hub.files(REPO)) == LOCAL_FILES


def test_hidden_files_are_not_pushed(hub, verified):
    (verified / ".cache" / "huggingface").mkdir(parents=True)
    (verified / ".cache" / "huggingface" / "upload.lock").write_text("x")
    (verified / ".DS_Store").write_text("x")
    result = push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    assert sorted(hub.files(REPO)) == sorted(result.files) == LOCAL_FILES


def test_console_script_in_a_fresh_process(hub, verified, tmp_path):
    """The real entry point, HF_ENDPOINT read from the environment at start-up, HF_HOME isolated."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rnaernie-push"] == "convert.push_cli:main"
    env = {**fresh_process_env(hub, tmp_path), "HF_TOKEN": GOOD_TOKEN}
    proc = subprocess.run([sys.executable, "-m", "convert.push_cli", str(verified), REPO, "--private"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert claims_pushed(proc.stdout) and proc.stderr.startswith("pushing 10 files")
    assert sorted(hub.files(REPO)) == LOCAL_FILES and hub.repos[REPO].private


HEAVY = ("numpy", "torch", "transformers", "paddle", "huggingface_hub", "safetensors", "convert.pipeline",
         "convert.verify.run", "convert.verify.prepare", "convert.verify.static", "convert.pdparams", "convert.mapping",
         "convert.writer", "convert.widget")


@pytest.mark.parametrize("args", [["--help"], ["{folder}", REPO, "--dry-run"]], ids=["help", "dry-run"])
def test_push_start_up_imports_nothing_heavy(verified, args):
    """`rnaernie-push --help` / `--dry-run` run in a fresh process; then we list what was imported."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['rnaernie-push', *{[a.format(folder=verified) for a in args]!r}]\n"
            "try:\n    runpy.run_module('convert.push_cli', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == "[]"
    assert ("Usage: rnaernie-push" if args == ["--help"] else "dry run (nothing sent)") in proc.stdout


# ---------------------------------------------------------------------------------------- failures

def _no_token(hub, monkeypatch):
    return []


def _wrong_token(hub, monkeypatch):
    return ["--token", "hf_revoked"]


def _forbidden(hub, monkeypatch):
    hub.forbidden_namespaces.add("lab")
    return ["--token", GOOD_TOKEN]


def _missing_pr_ref(hub, monkeypatch):
    return ["--token", GOOD_TOKEN, "--revision", "refs/pr/7"]


def _repo_vanished(hub, monkeypatch):
    hub.fail("preupload", 404, "RepoNotFound", "Repository not found")
    return ["--token", GOOD_TOKEN]


def _server_error(hub, monkeypatch):
    hub.fail("create", 500, message="Internal Error - We're working hard to fix this as soon as possible!")
    return ["--token", GOOD_TOKEN]


def _network_down(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return ["--token", GOOD_TOKEN]


@pytest.mark.parametrize("setup, expected", [
    (_no_token, r"no Hugging Face token found: run `hf auth login`, or pass --token or set HF_TOKEN"),
    (_wrong_token, r"the Hub rejected the token \(HTTP 401\) while creating lab/rnaernie\. Nothing was pushed\. "
                   r"Run `hf auth login` again"),
    (_forbidden, r"the token may not write to lab/rnaernie \(HTTP 403: You don't have the rights.*\) while creating "
                 r"lab/rnaernie\. Nothing was pushed\. Use a token with write access to 'lab'"),
    (_missing_pr_ref, r"the Hub has no revision 'refs/pr/7' in lab/rnaernie \(HTTP 404\) while uploading to "
                      r"lab/rnaernie\. The push did not complete.*--revision"),
    (_repo_vanished, r"lab/rnaernie was not found on the Hub \(HTTP 404: Repository not found\) while uploading"),
    (_server_error, r"the Hub had a server error \(HTTP 500: Internal Error.*\) while creating lab/rnaernie\. "
                    r"Nothing was pushed\. Try again in a few minutes"),
    (_network_down, r"cannot reach the Hub at http://127\.0\.0\.1:\d+ \(.*\) while creating lab/rnaernie\. "
                    r"Nothing was pushed\. Check the network connection"),
], ids=["no-token", "401", "403", "404-revision", "404-repo", "500", "network-down"])
def test_hub_failures_are_one_line_and_claim_nothing(hub, verified, monkeypatch, setup, expected):
    result = run_push(verified, REPO, *setup(hub, monkeypatch))

    assert result.exit_code == 2
    line = error_line(result.stderr)
    assert re.search(expected, line), line
    assert not claims_pushed(result.stdout + result.stderr)
    assert hub.commits == [] and hub.unknown == []


def test_no_token_means_no_request(hub, verified):
    assert run_push(verified, REPO).exit_code == 2
    assert hub.requests == []


@pytest.mark.parametrize("recovers", [False, True], ids=["gives-up", "recovers"])
def test_server_errors_during_the_commit_are_retried(hub, verified, monkeypatch, recovers, capsys):
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", lambda seconds: None)  # no real back-off
    hub.fail("commit", 503, message="Service Unavailable", times=2 if recovers else 10**6)
    lines: list[str] = []
    if recovers:
        push_folder(verified, REPO, token=GOOD_TOKEN, say=lines.append)
        assert claims_pushed("\n".join(lines)) and len(hub.commits) == 1
    else:
        with pytest.raises(HubError, match=r"server error \(HTTP 503: Service Unavailable\) while uploading to "
                                           r"lab/rnaernie\. The push did not complete"):
            push_folder(verified, REPO, token=GOOD_TOKEN, say=lines.append)
        assert hub.commits == [] and not claims_pushed("\n".join(lines))
        assert hub.endpoints_called().count("commit") == 6  # huggingface_hub's 5 retries
    assert any(line.startswith("hub: ") and "Retrying" in line for line in lines)  # relayed, not on stderr
    assert capsys.readouterr().err == ""


def test_offline_mode_is_named(hub, verified, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = run_push(verified, REPO, "--token", GOOD_TOKEN)
    assert result.exit_code == 2 and "HF_HUB_OFFLINE is set" in result.stderr and hub.requests == []


def test_timeouts_and_unexpected_errors_are_one_line_too():
    httpx2 = require("httpx2")  # huggingface_hub 2.x's HTTP client

    where = {"doing": f"creating {REPO}", "endpoint": "https://huggingface.co", "repo_id": REPO, "revision": None,
             "uploading": False}
    timeout = str(hub_failure(httpx2.ReadTimeout("timed out"), **where))
    assert timeout == ("the Hub at https://huggingface.co did not answer within 30 s while creating lab/rnaernie. "
                       "Nothing was pushed. Check the network connection and run again (--read-timeout / "
                       "RNAERNIE_HUB_READ_TIMEOUT allows longer).")
    other = str(hub_failure(RuntimeError("xet: CAS unreachable\nsecond line"), **{**where, "uploading": True}))
    assert "\n" not in other and "The push did not complete" in other and "--debug" in other


# ---------------------------------------------------------------------------------------- the verification gate

def test_unverified_folders_are_refused(hub, converted_copy):
    result = run_push(converted_copy, REPO, "--token", GOOD_TOKEN)
    assert result.exit_code == 2
    assert re.fullmatch(r"error: .* has not been verified \(no verification\.json\), so it will not be pushed: run "
                        r"`rnaernie-convert CHECKPOINT .* --verify-only` first, or pass --allow-unverified .*\n",
                        result.stderr)
    write_verification(converted_copy, "fail")
    result = run_push(converted_copy, REPO, "--token", GOOD_TOKEN)
    assert result.exit_code == 2
    assert "failed verification (first divergence at layer 2; see verification.json), so it will not be pushed: " \
           "fix the cause, then run `rnaernie-convert CHECKPOINT" in result.stderr
    assert hub.requests == []


@pytest.mark.parametrize("verdict, says", [(None, "**Not verified.**"), ("fail", "Verification **FAILED**")])
def test_allow_unverified_pushes_a_card_that_says_so(hub, converted_copy, verdict, says):
    if verdict:
        write_verification(converted_copy, verdict)
    result = run_push(converted_copy, REPO, "--token", GOOD_TOKEN, "--allow-unverified")

    assert result.exit_code == 0, result.stderr
    pushed_card = hub.files(REPO)["README.md"].decode()
    assert pushed_card == (converted_copy / "README.md").read_text()  # the local card was re-rendered too
    assert says in pushed_card and "parity-verified" not in pushed_card
    card = huggingface_hub.ModelCard.load(converted_copy / "README.md")
    assert "unverified" in card.data.tags
    assert "UNVERIFIED" in hub.commits[0].summary
    assert "pushing it anyway (--allow-unverified)" in result.stderr


def test_the_card_is_replaced_atomically_not_rewritten_in_place(hub, verified, tmp_path):
    (verified / "verification.json").unlink()  # the verified card must now be replaced by an unverified one
    readme = verified / "README.md"
    old_card = readme.read_text()
    os.link(readme, tmp_path / "old-card")  # a second name for the old file: an in-place rewrite would change it
    push_folder(verified, REPO, token=GOOD_TOKEN, allow_unverified=True, say=lambda line: None)
    assert "- unverified" in readme.read_text() and "- parity-verified" in old_card
    assert (tmp_path / "old-card").read_text() == old_card  # a new file was renamed over it: never half written
    assert [p.name for p in verified.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


# ---------------------------------------------------------------------------------------- huggingface_hub's API

def test_the_hub_extra_accepts_current_huggingface_hub_releases():
    """The push uses huggingface_hub's public API only, so the extra has a floor and no cap."""
    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["hub"]
    requirement = next(Requirement(r) for r in extra if r.startswith("huggingface_hub"))
    assert requirement.specifier.contains(huggingface_hub.__version__), (requirement, huggingface_hub.__version__)
    assert [spec.operator for spec in requirement.specifier] == [">="], requirement


def test_a_host_programs_client_factory_is_kept_and_still_bounded(hub, verified):
    """A program that set its own client factory (proxy, certificates) pushes through its own client,
    with the push's timeouts on every request; afterwards the client has only its own hooks again."""
    import httpx2

    sent = []

    def host_factory():
        return httpx2.Client(follow_redirects=True, headers={"X-Host-Program": "lab"},
                             event_hooks={"request": [], "response": [lambda r: sent.append(r.request)]})

    huggingface_hub.set_client_factory(host_factory)
    try:
        push_folder(verified, REPO, token=GOOD_TOKEN, limits=HubLimits(connect=2, read=3, deadline=3600),
                    say=lambda line: None)
        client = huggingface_hub.get_session()
        assert client.event_hooks == {"request": [], "response": client.event_hooks["response"]}
        assert len(client.event_hooks["response"]) == 1  # the push's hooks are gone
    finally:
        huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    assert len(sent) >= 3 and hub.commits  # create, preupload, commit ... all through the host's client
    assert all(request.headers["X-Host-Program"] == "lab" for request in sent)
    assert all(request.extensions["timeout"] == {"connect": 2, "read": 3, "write": 3, "pool": 2} for request in sent)


# ---------------------------------------------------------------------------------------- dry run

def test_dry_run_lists_files_and_card_without_network_or_token(verified):
    # HF_ENDPOINT points at a closed port and there is no token: any request or token lookup would fail.
    result = run_push(verified, REPO, "--dry-run", "--revision", "dev")

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("dry run (nothing sent): would push 10 files (0.5 MB) to http://127.0.0.1:")
    for name in LOCAL_FILES:
        size = (verified / name).stat().st_size
        assert re.search(rf"^ +{size:,} bytes  {re.escape(name)}$", out, re.M), name
    assert "verification: passed" in out
    assert out.split("----- README.md -----\n", 1)[1] == (verified / "README.md").read_text()
    assert not claims_pushed(out)


def test_dry_run_of_an_unverified_folder_shows_the_unverified_card_but_changes_nothing(converted_copy):
    write_verification(converted_copy, "fail")
    before = {p.name: p.read_bytes() for p in converted_copy.iterdir()}

    refused = run_push(converted_copy, REPO, "--dry-run")
    assert refused.exit_code == 2 and "failed verification" in refused.stderr
    result = run_push(converted_copy, REPO, "--dry-run", "--allow-unverified")
    assert result.exit_code == 0, result.stderr
    assert "verification: UNVERIFIED, the folder failed verification" in result.stdout
    assert "Verification **FAILED**" in result.stdout and '- unverified' in result.stdout
    assert {p.name: p.read_bytes() for p in converted_copy.iterdir()} == before


def test_python_api_dry_run_returns_what_would_be_pushed(verified):
    lines: list[str] = []
    result = push_folder(verified, REPO, dry_run=True, say=lines.append)
    assert result.dry_run and result.commit_oid is None and result.verified
    assert result.files["model.safetensors"] == (verified / "model.safetensors").stat().st_size
    assert result.card == (verified / "README.md").read_text() and result.card.rstrip() in lines[0]


# ---------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("repo_id", ["rnaernie", "lab/rna/ernie", "lab/bad name", "lab/-x", "lab/x..y", ""])
def test_bad_repo_ids_are_refused(verified, repo_id):
    result = run_push(verified, repo_id, "--dry-run")
    assert result.exit_code == 2 and "is not a Hub repository id; pass ORG/NAME" in result.stderr


@pytest.mark.parametrize("damage", ["missing", "empty", "no-record", "no-weights"])
def test_folders_not_made_by_this_tool_are_refused(tmp_path, verified, damage):
    folder = verified
    if damage == "missing":
        folder = tmp_path / "nowhere"
    elif damage == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    else:
        (folder / ("conversion.json" if damage == "no-record" else "model.safetensors")).unlink()
    result = run_push(folder, REPO, "--dry-run")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert ("is not a folder" if damage == "missing" else "not made by rnaernie-convert") in result.stderr


def test_missing_huggingface_hub_is_one_clear_line(verified, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub -> ImportError
    assert push_folder(verified, REPO, dry_run=True, say=lambda line: None).dry_run  # dry runs need no Hub
    with pytest.raises(MissingDependencyError, match=r"pip install 'rnaernie-convert\[hub\]'"):
        push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)


# ---------------------------------------------------------------------------------------- card + convert CLI

@pytest.mark.parametrize("fixture, pipeline_tag", [("tiny-mlm-2.4", "fill-mask"),
                                                   ("tiny-seqcls-13", "text-classification"),
                                                   ("tiny-encoder", "feature-extraction")])
def test_card_metadata_reads_back_with_huggingface_hub(tmp_path, fixture, pipeline_tag):
    from convert.pipeline import convert_checkpoint

    out = tmp_path / "out"
    convert_checkpoint(FIXTURES / fixture / "model_state.pdparams", out)
    for verdict in (None, "pass"):
        if verdict:
            write_verification(out, verdict)
        card = huggingface_hub.ModelCard.load(out / "README.md")
        assert card.data.to_dict() == {
            "library_name": "transformers", "pipeline_tag": pipeline_tag, "license": "mit",
            "tags": ["rna", "biology", "rnaernie", "ernie", "paddlepaddle-conversion",
                     "parity-verified" if verdict else "unverified"]}
        assert card.text.lstrip().startswith("# RNAErnie (")
        # rendered exactly as huggingface_hub's card classes render it (the push re-renders with them)
        assert card.content == (out / "README.md").read_text()


def test_convert_cli_push_to_hub(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    runner = CliRunner()
    refused = runner.invoke(cli.app, [str(TINY_MLM["2.4"]), str(tmp_path / "a"), "--no-verify", "--push-to-hub", REPO])
    assert refused.exit_code == 2 and "has not been verified" in refused.stderr
    assert (tmp_path / "a" / "model.safetensors").is_file() and hub.requests == []

    result = runner.invoke(cli.app, [str(TINY_MLM["2.4"]), str(tmp_path / "b"), "--no-verify", "--push-to-hub", REPO,
                                     "--allow-unverified", "--commit-message", "tiny test model"])
    assert result.exit_code == 0, result.stderr
    assert claims_pushed(result.stderr)  # rnaernie-convert reports progress on stderr
    assert [c.summary for c in hub.commits] == ["tiny test model"]
    assert sorted(hub.files(REPO)) == sorted(p.name for p in (tmp_path / "b").iterdir())


def test_convert_cli_refuses_bad_push_settings_before_writing(hub, tmp_path):
    runner = CliRunner()
    for bad in (["--push-to-hub", "not a repo"], ["--push-to-hub", REPO, "--deadline", "-1"]):
        result = runner.invoke(cli.app, [str(TINY_MLM["2.4"]), str(tmp_path / "out"), "--no-verify", *bad])
        assert result.exit_code == 2 and result.stderr.count("error:") == 1, result.stderr
        assert not (tmp_path / "out").exists() and hub.requests == []



# ---------------------------------------------------------------------------------------- large files (Xet storage)

def test_the_weights_go_through_xet_storage_as_a_real_push_does(hub, verified):
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)

    called = hub.endpoints_called()
    assert {"xet-token", "xorb", "shard"} <= set(called)
    assert called.index("xet-token") < called.index("xorb") < called.index("shard") < called.index("commit")
    binaries = {"model.safetensors", "type_guided.safetensors"}  # the weights and the rows kept aside
    assert hub.commits[0].lfs == binaries == hub.lfs_files(REPO)  # named by sha256, not inline
    assert hub.stored_bytes() == sum((verified / name).stat().st_size for name in binaries)
    assert all(hub.files(REPO)[name] == (verified / name).read_bytes() for name in binaries)
    assert hub.unknown == []


def test_pushing_again_sends_only_what_changed(hub, verified):
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    config = verified / "tokenizer_config.json"
    config.write_text(config.read_text() + "\n")
    write_verification(verified, "pass")  # verified again: the verdict vouches for the new bytes
    lines: list[str] = []
    again = push_folder(verified, REPO, token=GOOD_TOKEN, say=lines.append)

    assert again.changed and len(hub.commits) == 2
    # the weights and the rest were skipped
    assert set(hub.commits[1].files) == {"tokenizer_config.json", "verification.json"}
    assert hub.files(REPO)["tokenizer_config.json"] == config.read_bytes()
    assert hub.files(REPO)["model.safetensors"] == (verified / "model.safetensors").read_bytes()


def test_a_failure_in_the_middle_of_the_weights_upload_commits_nothing_and_a_rerun_finishes(hub, verified):
    hub.fail("xorb", 500, message="storage unavailable")
    result = run_push(verified, REPO, "--token", GOOD_TOKEN, "--deadline", "2", "--read-timeout", "1")

    assert result.exit_code == 2
    assert re.fullmatch(r"error: uploading large files to the Hub's storage failed \(.*500.*\) while uploading to "
                        r"lab/rnaernie\. The push did not complete; run the same command again once fixed \(files "
                        r"already there are skipped\)\. Try again in a few minutes; .*", error_line(result.stderr))
    assert "xorb" in hub.endpoints_called() and hub.commits == [] and hub.files(REPO) == {}
    assert not claims_pushed(result.stdout + result.stderr)

    hub.failures.clear()
    rerun = run_push(verified, REPO, "--token", GOOD_TOKEN)
    assert rerun.exit_code == 0, rerun.stderr
    assert hub.files(REPO) == {name: (verified / name).read_bytes() for name in LOCAL_FILES}


# ---------------------------------------------------------------------------------------- waiting

def run_push_process(hub, folder, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """rnaernie-push in a fresh process. Its own `timeout` is a guard: a push that hangs fails the test."""
    env = {**fresh_process_env(hub, tmp_path), "HF_TOKEN": GOOD_TOKEN}
    return subprocess.run([sys.executable, "-m", "convert.push_cli", str(folder), REPO, *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_a_hub_that_never_answers_ends_in_one_line(hub, verified, tmp_path):
    hub.never_answer()
    proc = run_push_process(hub, verified, tmp_path, "--read-timeout", "1", "--connect-timeout", "1")
    assert proc.returncode == 2
    assert error_line(proc.stderr) == (f"error: the Hub at {hub.url} did not answer within 1 s while creating "
                                       "lab/rnaernie. Nothing was pushed. Check the network connection and run again "
                                       "(--read-timeout / RNAERNIE_HUB_READ_TIMEOUT allows longer).")
    assert proc.stdout == ""


def test_limits_also_bound_calls_that_pass_no_timeout(hub, verified, tmp_path):
    """repo_info() passes timeout=None to the HTTP client (= wait forever); the push's limits still apply."""
    push_folder(verified, REPO, token=GOOD_TOKEN, say=lambda line: None)
    hub.never_answer("info")  # asked by the --private check
    proc = run_push_process(hub, verified, tmp_path, "--private", "--read-timeout", "1")
    assert proc.returncode == 2
    assert "did not answer within 1 s while creating lab/rnaernie" in error_line(proc.stderr)


class FakeClock:
    """Stands in for both the push's clock and huggingface_hub's back-off sleep: retries take no real time."""

    def __init__(self):
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limits_come_from_the_environment(hub, verified, monkeypatch):
    """RNAERNIE_HUB_* set the limits, and the read timeout is cut to what is left of the deadline.
    On the fake clock (time passes only in huggingface_hub's back-off pauses), so no answer time counts."""
    clock = FakeClock()
    monkeypatch.setattr(hub_transport, "clock", lambda: clock.now)
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", clock.sleep)
    reads = []
    before_request = HubWatch.before_request

    def noting_the_read_timeout(self, request):
        before_request(self, request)
        reads.append((request.url.path.rsplit("/", 2)[-2], request.extensions["timeout"]["read"]))

    monkeypatch.setattr(HubWatch, "before_request", noting_the_read_timeout)
    hub.fail("preupload", 503, message="Service Unavailable")
    monkeypatch.setenv("RNAERNIE_HUB_READ_TIMEOUT", "0.8")
    monkeypatch.setenv("RNAERNIE_HUB_DEADLINE", "1.5")
    result = run_push(verified, REPO, "--token", GOOD_TOKEN)
    assert result.exit_code == 2
    assert "gave no answer for 1.5 s, retries included while uploading to lab/rnaernie" in error_line(result.stderr)
    # the first preupload gets the whole read timeout; its retry, 1 s later, the 0.5 s left of the deadline;
    # the next retry, 2 s later, none
    assert [read for endpoint, read in reads if endpoint == "preupload"] == [0.8, 0.5]
    assert hub.endpoints_called().count("preupload") == 2


def test_retries_of_a_failing_hub_stop_at_the_deadline(hub, verified, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(hub_transport, "clock", lambda: clock.now)
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", clock.sleep)
    hub.fail("commit", 503, message="Service Unavailable")
    result = run_push(verified, REPO, "--token", GOOD_TOKEN, "--deadline", "10")

    assert result.exit_code == 2
    assert error_line(result.stderr) == (
        f"error: the Hub at {hub.url} gave no answer for 10 s, retries included while uploading to lab/rnaernie. "
        "The push did not complete; run the same command again once fixed (files already there are skipped). "
        "Try again later (https://status.huggingface.co), or allow longer with --deadline / RNAERNIE_HUB_DEADLINE.")
    # attempts at 0, 1, 3 and 7 s (back-off 1, 2, 4 s); the next, at 15 s, is past the deadline
    assert hub.endpoints_called().count("commit") == 4 and hub.commits == []


@pytest.mark.parametrize("value, says", [("0", "--deadline must be a positive number of seconds, not 0.0."),
                                         ("nan", "--deadline must be a positive number of seconds, not nan.")])
def test_bad_limits_are_refused(verified, value, says):
    result = run_push(verified, REPO, "--token", GOOD_TOKEN, "--deadline", value)
    assert result.exit_code == 2 and error_line(result.stderr) == f"error: {says}"


def test_bad_limits_from_the_environment_name_the_variable(verified, monkeypatch):
    monkeypatch.setenv("RNAERNIE_HUB_CONNECT_TIMEOUT", "ten")
    result = run_push(verified, REPO, "--token", GOOD_TOKEN)
    assert error_line(result.stderr) == ("error: RNAERNIE_HUB_CONNECT_TIMEOUT must be a positive number of seconds, "
                                         "not 'ten'.")


def test_hf_xet_gets_the_limits_unless_the_user_set_its_own(hub, verified, monkeypatch):
    seen = {}
    real_upload = huggingface_hub.HfApi.upload_folder

    def upload_folder(self, **kwargs):
        seen.update({name: os.environ.get(name) for name in ("HF_XET_CLIENT_CONNECT_TIMEOUT",
                                                            "HF_XET_CLIENT_READ_TIMEOUT",
                                                            "HF_XET_CLIENT_RETRY_MAX_DURATION")})
        return real_upload(self, **kwargs)

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_XET_CLIENT_READ_TIMEOUT", "7s")
    push_folder(verified, REPO, token=GOOD_TOKEN, limits=HubLimits(connect=2, read=3, deadline=4.5),
                say=lambda line: None)
    assert seen == {"HF_XET_CLIENT_CONNECT_TIMEOUT": "2000ms", "HF_XET_CLIENT_READ_TIMEOUT": "7s",
                    "HF_XET_CLIENT_RETRY_MAX_DURATION": "4500ms"}
    assert "HF_XET_CLIENT_CONNECT_TIMEOUT" not in os.environ  # restored after the push


# ---------------------------------------------------------------------------------------- interruption

def test_ctrl_c_while_the_weights_upload_says_no_commit_was_made(hub, verified, monkeypatch):
    hub.on_request("xorb", lambda: os.kill(os.getpid(), signal.SIGINT))  # as if Ctrl-C were pressed now
    result = run_push(verified, REPO, "--token", GOOD_TOKEN)

    assert result.exit_code == 130
    assert error_line(result.stderr) == (
        "error: interrupted while uploading to lab/rnaernie; lab/rnaernie was created, but no commit was made, so the "
        "repository's files are unchanged (large files already sent to the Hub's storage are not in the repository, "
        "and will not be sent again). Run the same command again to push.")
    assert hub.commits == []


NO_COMMIT = "no commit was made, so the repository's files are unchanged"
AGAIN = "Run the same command again to push."
INTERRUPTED_AT = {  # moment -> what the one line says the Hub holds
    "create": f"while creating lab/rnaernie; {NO_COMMIT}. {AGAIN}",
    "preupload": f"while uploading to lab/rnaernie; lab/rnaernie was created, but {NO_COMMIT}. {AGAIN}",
    "xorb": (f"while uploading to lab/rnaernie; lab/rnaernie was created, but {NO_COMMIT} (large files already sent "
             f"to the Hub's storage are not in the repository, and will not be sent again). {AGAIN}"),
    "commit": ("while uploading to lab/rnaernie; the commit was sent but not answered, so it may or may not have been "
               "applied: check {url}/lab/rnaernie and run the same command again (it pushes only what is missing)."),
    "committed": "while uploading to lab/rnaernie; the commit was applied: {url}/lab/rnaernie has the files.",
}


def push_interrupted_at(hub, folder, tmp_path, moment: str, signum: signal.Signals) -> subprocess.CompletedProcess:
    """rnaernie-push in its own process, sent `signum` when the stand-in Hub receives the request named
    `moment` (before answering it), or at "committed" (the upload has returned)."""
    env = {**fresh_process_env(hub, tmp_path), "HF_TOKEN": GOOD_TOKEN}
    # "committed": sent as the upload returns, by tests/interrupt.py
    wrapper = ["tests.interrupt", f"committed:{signum.name}"] if moment == "committed" else []
    process: subprocess.Popen | None = None

    def interrupt() -> None:
        process.send_signal(signum)
        try:  # answer only once the push has stopped, so the answer cannot overtake the signal
            process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            pass  # the test's own communicate() below reports the hang

    if moment != "committed":
        hub.on_request(moment, interrupt)
    process = subprocess.Popen([sys.executable, "-m", *wrapper, "convert.push_cli", str(folder), REPO], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, preexec_fn=signals_as_in_a_terminal)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("moment", list(INTERRUPTED_AT))
def test_sigterm_during_rnaernie_push_says_what_the_hub_holds(hub, verified, tmp_path, moment):
    proc = push_interrupted_at(hub, verified, tmp_path, moment, signal.SIGTERM)
    assert proc.returncode == 143, proc.stderr
    assert error_line(proc.stderr) == "error: terminated " + INTERRUPTED_AT[moment].format(url=hub.url)
    assert proc.stdout == ""  # nothing claimed as pushed
    if moment in ("create", "preupload", "xorb"):
        assert hub.commits == []


@pytest.mark.parametrize("moment", ["preupload", "commit"])
def test_ctrl_c_during_rnaernie_push_says_what_the_hub_holds(hub, verified, tmp_path, moment):
    proc = push_interrupted_at(hub, verified, tmp_path, moment, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    assert error_line(proc.stderr) == "error: interrupted " + INTERRUPTED_AT[moment].format(url=hub.url)


def test_an_unanswered_commit_is_reported_as_maybe_applied():
    watch = HubWatch(HubLimits())
    request = type("Request", (), {"url": type("URL", (), {"path": "/api/models/lab/rnaernie/commit/main"})(),
                                   "method": "POST", "extensions": {}})()
    watch.before_request(request)
    assert remote_state(watch, REPO, "https://hf.co/lab/rnaernie") == (
        "the commit was sent but not answered, so it may or may not have been applied: check https://hf.co/lab/rnaernie "
        "and run the same command again (it pushes only what is missing).")
    assert request.extensions["timeout"] == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 10.0}


# ---------------------------------------------------------------------------------------- widget examples

def test_widget_examples_are_the_converted_models_own_predictions(converted_dirs):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    from convert.widget import EXAMPLES, fill_mask_examples

    folder = converted_dirs["2.4"]
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    widget = fill_mask_examples(model, tokenizer)

    assert [(w["example_title"], w["text"]) for w in widget] == list(EXAMPLES)
    assert {"GGUC[MASK]CUCUGGUUAGACCAGAUCUGAGCCU", "UAGC[MASK]UAUCAGACUGAUGUUGA"} <= {w["text"] for w in widget}
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    for example in widget:  # what a user of the pipeline gets, to the card's 4 decimals
        expected = [{"label": p["token_str"], "score": round(p["score"], 4)} for p in fill(example["text"], top_k=5)]
        assert example["output"] == expected


def test_a_verified_masked_lm_card_carries_the_widget_and_reads_back(converted_copy):
    verification = fake_verification("pass")
    verification["widget"] = [{"text": "GGUC[MASK]CUCUGGUUAGACCAGAUCUGAGCCU", "example_title": "HIV-1 TAR",
                               "output": [{"label": "U", "score": 0.1861}, {"label": "[SEP]", "score": 0.1153},
                                          {"label": "G", "score": 0.0}]}]
    (converted_copy / "verification.json").write_text(json.dumps(verification))
    record = json.loads((converted_copy / "conversion.json").read_text())
    card_text = render_card(record, verification)
    (converted_copy / "README.md").write_text(card_text)

    card = huggingface_hub.ModelCard.load(converted_copy / "README.md")
    assert card.data.widget == verification["widget"]
    assert card.content == card_text  # rendered as huggingface_hub renders it: the push leaves it unchanged
    assert "| HIV-1 TAR | `GGUC[MASK]CUCUGGUUAGACCAGAUCUGAGCCU` | `U` 0.1861, `[SEP]` 0.1153, `G` 0.0000 |" in card_text
    assert 'targets=["A", "C", "G", "U"]' in card_text and "`[UNK]` `[CLS]` `[SEP]` `[MASK]` `[DEL]`" in card_text
    assert "widget" not in huggingface_hub.ModelCard(render_card(record, {**verification, "verdict": "fail"})).data


def test_the_verifier_stores_the_widget_examples(tmp_path):
    require("paddle")
    from convert.pipeline import convert_checkpoint
    from convert.verify import verify_conversion

    out = tmp_path / "out"
    convert_checkpoint(TINY_MLM["2.4"], out)
    verification = verify_conversion(TINY_MLM["2.4"], out, say=lambda line: None)
    assert [w["example_title"] for w in verification["widget"]] == ["HIV-1 TAR", "miR-21"]
    assert all(len(w["output"]) == 5 for w in verification["widget"])
    assert huggingface_hub.ModelCard.load(out / "README.md").data.widget == verification["widget"]

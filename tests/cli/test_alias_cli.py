"""``keel alias``: delete with history, refuse case twins, and what a running server does."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from keel.registry import Registry
from serving.keel_server import start_server
from support import keel_at

MODEL = "breast-cancer"


def test_alias_delete_removes_it_and_the_history_says_who_when_and_why(demo_copy: Path) -> None:
    store = Registry(demo_copy)
    candidate = store.aliases(MODEL)["candidate"]
    short = store.short_ids(MODEL)[candidate]
    code, out, err = keel_at(
        demo_copy, "alias", "delete", MODEL, "candidate", "-m", "rolled back [x]"
    )
    assert code == 0, err
    assert f"{MODEL}@candidate deleted (was {short})" in out
    assert "keep answering with" in err
    assert "candidate" not in store.aliases(MODEL)
    code, out, _ = keel_at(demo_copy, "alias", "history", MODEL, "--json")
    last = json.loads(out)[-1]
    assert (last["alias"], last["version"], last["previous"]) == ("candidate", None, candidate)
    assert last["reason"] == "rolled back [x]"
    assert "@" in last["by"]
    code, table, err = keel_at(demo_copy, "alias", "history", MODEL)
    assert code == 0, err
    assert "(deleted)" in table
    code, _, err = keel_at(demo_copy, "models", "show", f"{MODEL}@candidate")
    assert code == 7
    assert "no such alias" in err


def test_deleting_an_alias_that_is_not_there_names_the_ones_that_are(demo_copy: Path) -> None:
    history = Registry(demo_copy).alias_history(MODEL)
    code, _, err = keel_at(demo_copy, "alias", "delete", MODEL, "Candidate")
    assert code == 7
    assert "has no alias 'Candidate' (aliases: candidate, production)" in err
    assert "did you mean 'candidate'?" in err
    assert Registry(demo_copy).alias_history(MODEL) == history


@pytest.mark.parametrize("twin", ["Production", "PRODUCTION", "producTion"])
def test_an_alias_differing_only_by_case_is_refused_naming_the_existing_one(
    demo_copy: Path, twin: str
) -> None:
    aliases = Registry(demo_copy).aliases(MODEL)
    code, _, err = keel_at(demo_copy, "alias", "set", MODEL, twin, "candidate")
    assert code == 3
    assert f"already has the alias 'production', which differs from '{twin}' only by case" in err
    assert "Traceback" not in err
    assert Registry(demo_copy).aliases(MODEL) == aliases


def test_aliases_stay_case_sensitive_otherwise(demo_copy: Path) -> None:
    code, _, err = keel_at(demo_copy, "alias", "set", MODEL, "Staging", "candidate")
    assert code == 0, err
    assert "Staging" in Registry(demo_copy).aliases(MODEL)
    code, _, err = keel_at(demo_copy, "models", "show", f"{MODEL}@staging")
    assert code == 7
    assert "no such alias" in err


def test_a_server_keeps_its_version_when_its_alias_is_deleted_and_swaps_when_it_returns(
    demo_copy: Path, tmp_path: Path
) -> None:
    store = Registry(demo_copy)
    old = store.aliases(MODEL)["candidate"].replace("/", "-", 1)
    new = store.aliases(MODEL)["production"].replace("/", "-", 1)
    log = tmp_path / "server.log"
    server = start_server(
        demo_copy, (f"{MODEL}@candidate",), log, KEEL_SERVER__WATCH_INTERVAL_S="0.2"
    )
    try:
        server.wait_ready()
        body = {"instances": [store.resolve(f"{MODEL}@candidate").golden.inputs[0]]}
        with server.client() as client:
            code, _, err = keel_at(demo_copy, "alias", "delete", MODEL, "candidate", "-m", "test")
            assert code == 0, err
            deadline = time.monotonic() + 30
            while f"could not check {MODEL}@candidate" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            answer = client.post(f"/v1/models/{MODEL}/predict", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == old
            assert client.get("/v2/health/ready").status_code == 200
            code, _, err = keel_at(demo_copy, "alias", "set", MODEL, "candidate", "production")
            assert code == 0, err
            while answer.json()["model_version"] != new:
                assert time.monotonic() < deadline + 30, "the alias was never picked up again"
                answer = client.post(f"/v1/models/{MODEL}/predict", json=body)
                assert answer.status_code == 200, answer.text
    finally:
        assert server.stop() in (0, -signal.SIGTERM), log.read_text()

"""Versions people can type: short ids on the command line, in tables and on a server."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.registry import Registry
from serving.keel_server import ServerProcess, start_server
from shadow.shadow_traffic import breast_cancer_pair, run_traffic, write_log
from support import keel_at, run_keel

MODEL = "breast-cancer"
VERSION_HEADER = "x-keel-model-version"


def _listed(demo_copy: Path, name: str = MODEL) -> list[dict[str, Any]]:
    code, out, err = keel_at(demo_copy, "models", "versions", name, "--json")
    assert code == 0, err
    listed: list[dict[str, Any]] = json.loads(out)
    return listed


def test_models_versions_lists_every_version_newest_first_with_id_time_sha_and_aliases(
    demo_copy: Path,
) -> None:
    store = Registry(demo_copy)
    store.set_alias(MODEL, "staging", "candidate")
    versions = store.versions(MODEL)
    listed = _listed(demo_copy)
    assert [v["version"] for v in listed] == versions[::-1]
    ids = store.short_ids(MODEL)
    aliases = store.aliases(MODEL)
    for entry in listed:
        meta = store.metadata(MODEL, entry["version"])
        assert entry["id"] == ids[entry["version"]]
        assert entry["created_at"] == meta.created_at.isoformat()
        assert entry["git_sha"] == meta.source.git_sha
        assert entry["git_dirty"] == meta.source.git_dirty
        assert entry["aliases"] == sorted(a for a, v in aliases.items() if v == entry["version"])
    assert listed[0]["aliases"] == ["candidate", "staging"]
    assert listed[1]["aliases"] == ["production"]
    code, table, err = keel_at(demo_copy, "models", "versions", MODEL)
    assert code == 0, err
    rows = [line for line in table.splitlines() if any(e["id"] in line for e in listed)]
    assert [next(e["id"] for e in listed if e["id"] in row) for row in rows] == [
        e["id"] for e in listed
    ]
    newest = rows[0]
    assert listed[0]["git_sha"][:10] in newest
    assert "candidate, staging" in newest
    assert listed[0]["created_at"][:10] in newest


def test_models_versions_of_an_unknown_model_is_not_found(demo_copy: Path) -> None:
    code, _, err = keel_at(demo_copy, "models", "versions", "no-such-model")
    assert code == 7
    assert "no published version" in err


def test_a_short_id_names_a_version_in_show_verify_and_alias_set(demo_copy: Path) -> None:
    oldest = _listed(demo_copy)[-1]
    code, out, err = keel_at(demo_copy, "models", "show", f"{MODEL}@{oldest['id']}", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == oldest["version"]
    code, out, err = keel_at(demo_copy, "models", "show", f"{MODEL}@{oldest['id']}")
    assert code == 0, err
    assert f"{MODEL}@{oldest['id']}" in out
    code, out, err = keel_at(demo_copy, "verify", f"{MODEL}@{oldest['id']}")
    assert code == 0, out + err
    code, out, err = keel_at(demo_copy, "alias", "set", MODEL, "staging", oldest["id"])
    assert code == 0, err
    assert f"{MODEL}@staging → {oldest['id']} ({oldest['version']})" in out
    assert Registry(demo_copy).aliases(MODEL)["staging"] == oldest["version"]


def test_the_label_and_the_full_version_still_name_a_version(demo_copy: Path) -> None:
    newest = _listed(demo_copy)[0]
    label = newest["version"].replace("/", "-", 1)
    for spelling in (newest["version"], label):
        code, out, err = keel_at(demo_copy, "models", "show", f"{MODEL}@{spelling}", "--json")
        assert code == 0, err
        assert json.loads(out)["version"] == newest["version"]


def test_a_sha_prefix_shared_by_two_versions_is_refused_listing_both_short_ids(
    demo_copy: Path,
) -> None:
    listed = _listed(demo_copy)
    code, _, err = keel_at(demo_copy, "models", "show", f"{MODEL}@{listed[0]['git_sha'][:7]}")
    assert code == 7
    assert "matches 2 versions; name one by its short id" in err
    for entry in listed:
        assert f"{entry['id']} ({entry['version']})" in err
    assert "Traceback" not in err


def test_promote_takes_the_candidate_by_its_short_id(demo_copy: Path, tmp_path: Path) -> None:
    store = Registry(demo_copy)
    log_url = write_log(tmp_path / "log.sqlite", run_traffic(breast_cancer_pair(store), 5))
    candidate = store.aliases(MODEL)["candidate"]
    short = store.short_ids(MODEL)[candidate]
    result = run_keel(
        "promote", MODEL, "--candidate", short, "--force", "-m", "by short id",
        "--log-store", log_url, "--registry", str(demo_copy),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert store.aliases(MODEL)["production"] == candidate


@pytest.mark.parametrize(
    "command",
    [("models", "list"), ("models", "versions", MODEL), ("alias", "history", MODEL)],
    ids=["models-list", "models-versions", "alias-history"],
)
def test_tables_at_80_columns_print_every_version_whole_and_distinct(
    demo_copy: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    store = Registry(demo_copy)
    # Every version behind an alias, so every table shows each one.
    ids = store.short_ids(MODEL)
    for version, short in ids.items():
        store.set_alias(MODEL, f"pinned-{short}", version, reason="a long reason " * 4)
    listed = {e["id"] for name in (MODEL, "digits-mlp") for e in _listed(demo_copy, name)}
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = keel_at(demo_copy, *command)
    assert code == 0, err
    # The title may run on (the console soft-wraps text); the table keeps to the width.
    assert max(len(line) for line in out.splitlines() if line[:1] in "┏┃┡│└") <= 80
    assert "…" not in out
    shown = {short for short in listed if short in out}
    assert shown >= set(ids.values())
    if command == ("models", "list"):
        assert shown == listed
    # The long form, which Rich used to cut to the same text, is gone from the cells.
    assert next(iter(ids))[:20] not in out


@pytest.fixture
def served(demo_copy: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """``keel serve`` of production and, by its short id, the candidate."""
    store = Registry(demo_copy)
    ids = store.short_ids(MODEL)
    candidate = store.aliases(MODEL)["candidate"]
    server = start_server(
        demo_copy,
        (f"{MODEL}@production", f"{MODEL}@{ids[candidate]}"),
        tmp_path / "server.log",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )
    try:
        server.wait_ready()
        yield server, {v: ids[v] for v in store.aliases(MODEL).values()}
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.log.read_text()


def test_the_server_routes_a_short_id_in_the_path_and_in_the_version_header(
    served: tuple[ServerProcess, dict[str, str]], demo_copy: Path
) -> None:
    server, ids = served
    body = {"instances": [Registry(demo_copy).resolve(f"{MODEL}@production").golden.inputs[0]]}
    with server.client() as client:
        for version, short in ids.items():
            label = version.replace("/", "-", 1)
            by_path = client.post(f"/v1/models/{MODEL}/versions/{short}/predict", json=body)
            assert by_path.status_code == 200, by_path.text
            assert by_path.json()["model_version"] == label
            by_header = client.post(
                f"/v1/models/{MODEL}/predict", json=body, headers={VERSION_HEADER: short}
            )
            assert by_header.status_code == 200, by_header.text
            assert by_header.headers[VERSION_HEADER] == label
            metadata = client.get(f"/v2/models/{MODEL}/versions/{short}")
            assert metadata.status_code == 200, metadata.text
        unknown = client.post(f"/v1/models/{MODEL}/versions/0000000/predict", json=body)
        assert unknown.status_code == 404

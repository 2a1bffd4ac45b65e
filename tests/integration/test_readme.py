"""The README's Python example runs as written and its model verifies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import git, run_keel

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_publishes_a_verifiable_model(git_repo: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    script = git_repo / "publish_iris.py"
    script.write_text(blocks[0])
    git(git_repo, "add", "publish_iris.py")
    git(git_repo, "commit", "-q", "-m", "iris example")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=git_repo, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    verified = run_keel("verify", "iris@production", "--registry", "registry", cwd=git_repo)
    assert verified.returncode == 0, verified.stdout + verified.stderr

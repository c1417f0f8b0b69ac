"""The README's quickstart commands run, as written, against the real Neo4j."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Neo4jTarget

pytestmark = pytest.mark.neo4j


def quickstart_commands() -> list[str]:
    """The ``twinkg`` lines of the README's Quickstart block (server management left out)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's Quickstart has no bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("twinkg ") and " db " not in line]


def test_quickstart_has_commands() -> None:
    assert len(quickstart_commands()) >= 4


@pytest.mark.parametrize("command", quickstart_commands())
def test_quickstart_command_runs(command: str, neo4j_target: Neo4jTarget, tmp_path: Path) -> None:
    env = neo4j_target.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    if "seed" not in command:
        seeded = subprocess.run(
            ["twinkg", "seed", "--plant", "skab-testbed"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert seeded.returncode == 0, seeded.stderr
    done = subprocess.run(
        ["bash", "-c", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"{command!r} failed: {done.stderr}"
    assert done.stdout.strip() or list(tmp_path.iterdir()), f"{command!r} printed nothing"


def test_python_api_example_runs(neo4j_target: Neo4jTarget, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## API.*?```python\n(.*?)```", readme, re.DOTALL)
    assert block, "the README's API section has no python block"
    env = neo4j_target.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    seeded = subprocess.run(
        ["twinkg", "seed", "--plant", "skab-testbed"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "'Accelerometer1RMS'" in done.stdout and "triples" in done.stdout

"""The README's examples run, as written, against the real Neo4j."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Neo4jTarget

pytestmark = pytest.mark.neo4j
README = (REPO / "README.md").read_text(encoding="utf-8")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def quickstart_commands() -> list[str]:
    """The ``twinkg`` lines of the README's Quickstart block (server management left out)."""
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README, re.DOTALL)
    assert block, "the README's Quickstart has no bash block"
    # A comment starts at a "#" after whitespace and before a space ("# …"); IRIs keep theirs.
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("twinkg ") and " db " not in line]


@pytest.fixture(scope="module")
def env(neo4j_target: Neo4jTarget) -> dict[str, str]:
    """The CLI on PATH, pointed at the test Neo4j, with the SKAB testbed seeded."""
    env = neo4j_target.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    seeded = _run(["twinkg", "seed", "--plant", "skab-testbed"], env, REPO)
    assert seeded.returncode == 0, seeded.stderr
    return env


def test_quickstart_has_commands() -> None:
    assert len(quickstart_commands()) >= 4


@pytest.mark.parametrize("command", quickstart_commands())
def test_quickstart_command_runs(command: str, env: dict[str, str], tmp_path: Path) -> None:
    # Run where a clone would be: in a folder with ../shared beside it.
    shared = REPO.parent / "shared"
    if "../shared/" in command and not shared.exists():
        pytest.skip(f"{command!r} reads {shared}, which is absent")
    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "clone").mkdir()
    done = _run(["bash", "-c", command], env, tmp_path / "clone")
    assert done.returncode == 0, f"{command!r} failed: {done.stderr}"
    wrote = list((tmp_path / "clone").iterdir())
    assert done.stdout.strip() or wrote, f"{command!r} printed nothing"


def test_python_api_example_runs(env: dict[str, str]) -> None:
    block = re.search(r"## API.*?```python\n(.*?)```", README, re.DOTALL)
    assert block, "the README's API section has no python block"
    done = _run([sys.executable, "-c", block.group(1)], env, REPO)
    assert done.returncode == 0, done.stderr
    assert "'Accelerometer1RMS'" in done.stdout and "triples" in done.stdout

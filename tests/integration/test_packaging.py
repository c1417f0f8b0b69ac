"""The installed names: everything of TwinKG under ``twinkg.*``, nothing under a bare name.

The wheel is built from this checkout and installed into a fresh virtual environment together
with ``openai-agents``, which also installs a top-level ``agents``; both must import. The
editable install of the development environment must expose ``twinkg`` only. No module of the
project may import a package by its bare 0.1 name. Building and installing needs PyPI (the
build backend and the dependencies), as the README's set-up does.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from twinkg.api.cli.main import LAZY_COMMANDS

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ontology", "shapes", "kg", "reasoner", "agents", "graph_seed", "connect", "sim", "api")
LOCK = REPO / "requirements.lock"


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


WHEEL_PROBE = """
import importlib.util, json, sys, agents, twinkg
from twinkg.agents import state
from twinkg.api.cli import main as cli
from twinkg.ontology.catalog import load_ontology
from twinkg.shapes.registry import ContractRegistry
print(json.dumps({
    "openai_agents": hasattr(agents, "Agent") and hasattr(agents, "Runner"),
    "agents_file": agents.__file__,
    "twinkg_file": twinkg.__file__,
    "version": twinkg.__version__,
    "state": state.AgentState.__module__,
    "bare": {n: importlib.util.find_spec(n) is not None for n in json.loads(sys.argv[1])
             if n != "agents"},
    "triples": len(load_ontology()),
    "contracts": len(ContractRegistry().versions("telemetry")),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built as a user would (an isolated PEP 517 build)."""
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, REPO, cwd=out)
    (built,) = out.glob("twinkg-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"twinkg", wheel.name.split("-py")[0] + ".dist-info"}
    for package in PACKAGES:
        if (REPO / package).is_dir():
            assert f"twinkg/{package}/__init__.py" in names
    expected = {  # data the code reads next to itself
        "twinkg/shapes/contracts/telemetry/1.0.0.ttl",
        "twinkg/kg/neo4j-server/pom.xml",
        "twinkg/api/console/static/index.html",  # the web console, served from the package
        "twinkg/api/console/static/console.js",
        "twinkg/api/console/static/console.css",
    }
    assert expected <= set(names)
    assert any(n.startswith("twinkg/ontology/modules/") and n.endswith(".ttl") for n in names)
    assert any(n.startswith("twinkg/shapes/safety/") for n in names)
    assert any(n.startswith("twinkg/graph_seed/plants/") for n in names)
    assert not [n for n in names if "/target/" in n or n.endswith(".pyc")]


def test_the_wheel_and_openai_agents_live_in_one_environment(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    _run(
        python, "-m", "pip", "install", "--quiet", "-c", LOCK, wheel, "openai-agents", cwd=tmp_path
    )
    packages = json.dumps(PACKAGES)
    seen = json.loads(_run(python, "-c", WHEEL_PROBE, packages, cwd=tmp_path))
    site = str(env / "lib")
    assert seen["openai_agents"] is True
    assert seen["agents_file"].startswith(site) and "twinkg" not in seen["agents_file"]
    assert seen["twinkg_file"].startswith(site)
    assert (
        seen["version"]
        == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    )
    assert seen["state"] == "twinkg.agents.state"
    assert not any(seen["bare"].values()), seen["bare"]
    assert seen["triples"] > 100 and seen["contracts"] >= 1
    helped = _run(env / "bin" / "twinkg", "--help", cwd=tmp_path)
    assert "Usage: twinkg" in helped
    # Listing them loads every lazily imported command module from the wheel (decision 0082).
    assert [n for n in LAZY_COMMANDS if f"│ {n} " not in helped] == [], helped


def test_the_editable_install_exposes_only_twinkg(tmp_path: Path) -> None:
    probe = f"""
import importlib.util, json, twinkg.kg.store
print(json.dumps({{
    "bare": [n for n in {PACKAGES!r} if importlib.util.find_spec(n) is not None],
    "file": twinkg.kg.store.__file__,
}}))
"""
    seen = json.loads(_run(sys.executable, "-c", probe, cwd=tmp_path))  # not the repository
    assert seen["bare"] == []
    assert Path(seen["file"]).resolve() == REPO / "kg" / "store.py"


def _python_files() -> list[Path]:
    roots = [*PACKAGES, "tests", "benchmarks"]
    files = [f for root in roots if (REPO / root).is_dir() for f in (REPO / root).rglob("*.py")]
    return [REPO / "twinkg" / "__init__.py", *(f for f in files if "neo4j-server" not in f.parts)]


def test_no_module_imports_a_package_by_its_bare_name() -> None:
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in PACKAGES
            ]
    assert offenders == []

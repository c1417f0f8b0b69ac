"""The interfaces stay apart (decision 0031): ``api/cli``, ``api/http`` and ``api/mcp`` import no
other interface, routers import no other router, and the twin imports no interface at all;
``sim/`` imports neither ``graph_seed`` nor ``api`` (decision 0047)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

API = REPO / "api"
INTERFACES = ("cli", "http", "mcp")
ROUTERS = ("core", "agents", "decisions", "sparql")
# The top of api/ that the interfaces share; none of it may import an interface.
SHARED = (
    "twin",
    "offline",
    "results",
    "schemas",
    "resources",
    "agent_inputs",
    "settings",
    "errors",
)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, with ``from twinkg.api.http import core`` as
    ``twinkg.api.http.core`` too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("interface", INTERFACES)
def test_an_interface_imports_no_other_interface(interface: str) -> None:
    others = [f"twinkg.api.{o}" for o in INTERFACES if o != interface]
    for path in sorted((API / interface).glob("*.py")):
        wrong = {m for m in _imports(path) if any(m == o or m.startswith(o + ".") for o in others)}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_routers_import_no_other_router() -> None:
    for name in ROUTERS:
        others = {f"twinkg.api.http.{o}" for o in ROUTERS if o != name}
        wrong = _imports(API / "http" / f"{name}.py") & others
        assert not wrong, f"api/http/{name}.py imports {sorted(wrong)}"


@pytest.mark.parametrize("name", SHARED)
def test_the_twin_and_what_it_shares_import_no_interface(name: str) -> None:
    interfaces = tuple(f"twinkg.api.{i}" for i in INTERFACES)
    wrong = {m for m in _imports(API / f"{name}.py") if m.startswith(interfaces)}
    assert not wrong, f"api/{name}.py imports {sorted(wrong)}"


def test_the_cli_starts_without_loading_the_simulators() -> None:
    """Every ``twinkg`` command pays for what the CLI imports at start: the simulators (wntr,
    tep-studio, fmpy, about a second) load only in the commands that use them."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    probe = (
        "import sys, twinkg.api.cli.main; "
        "print(sorted(m for m in ('wntr', 'tep_studio', 'fmpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_sim_imports_neither_graph_seed_nor_api() -> None:
    """``sim/`` sits below the application layer (decision 0047): ``graph_seed`` imports
    ``sim.binding`` and the simulators, so a ``sim`` module importing ``graph_seed`` (even lazily)
    would make the two packages a cycle; a scenario's plant is put together in
    ``api/sim_plants.py``."""
    banned = ("twinkg.graph_seed", "twinkg.api")
    for path in sorted((REPO / "sim").glob("*.py")):
        wrong = {m for m in _imports(path) if m.startswith(banned)}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"

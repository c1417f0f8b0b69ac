"""The ``twinkg`` command line loads a command group's module only when one of its commands runs
(decision 0082), and every command is still there, with its help, as when all were imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from twinkg.api.cli.main import LAZY_COMMANDS, app, load_command

# The command line's surface, as the README's CLI section documents it.
COMMANDS = (
    *("seed", "cypher", "show", "export", "db", "vocab", "contracts", "reason", "agents", "sim"),
    *("verify", "lineage", "replay", "ingest", "quarantine", "telemetry", "serve", "run"),
    *("service", "sparql", "assets", "context", "api", "broker", "connect", "keys", "audit"),
    "edge",
)
# What only some commands need, and the import of the command line must not pull in.
HEAVY = ("asyncua", "langgraph", "pyshacl", "wntr", "fastapi", "twinkg.api.twin")


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_lazy_command_loads_under_its_name_and_answers_its_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    done = CliRunner().invoke(app, [name, "--help"])
    assert done.exit_code == 0, done.output
    assert f"Usage: root {name}" in done.output
    assert (command.help or "").split()[0] in done.output


def test_the_root_help_lists_every_command_once() -> None:
    done = CliRunner().invoke(app, ["--help"])
    assert done.exit_code == 0, done.output
    rows = [line for line in done.output.splitlines() if line.startswith("│ ")]
    listed = [row.split()[1] for row in rows if row[2] != " "]  # not a wrapped help line
    commands = [n for n in listed if not n.startswith("-")]
    assert sorted(commands) == sorted(COMMANDS)


def test_an_unknown_command_is_refused_with_usage() -> None:
    done = CliRunner().invoke(app, ["no-such-command"])
    assert done.exit_code == 2
    assert "No such command" in done.output


def test_importing_the_command_line_loads_no_command_groups_dependencies() -> None:
    probe = (
        "import json, sys; import twinkg.api.cli.main; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


def test_a_lazy_command_runs_with_its_dependencies_loaded() -> None:
    probe = (
        "import json, sys; from typer.testing import CliRunner; "
        "from twinkg.api.cli.main import app; "
        "done = CliRunner().invoke(app, ['connect', '--help']); "
        "print(json.dumps([done.exit_code, 'twinkg.api.cli.connect' in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == [0, True]

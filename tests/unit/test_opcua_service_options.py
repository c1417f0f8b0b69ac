"""``twinkg run --opcua URL=MAPPING`` and ``TWINKG_OPCUA_SERVERS`` without a server (decision
0063): each bad form, URL or mapping file is refused with one line and its stable code before
anything starts, and hostile text gives a server or a refusal, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from twinkg.api.cli.main import app
from twinkg.api.opcua_service import OpcUaServer, load_servers, parse_server
from twinkg.api.settings import Settings
from twinkg.ontology.errors import InvalidInputError, OpcUaMappingError

MAPPING = """
version = 1
[[telemetry]]
node = "nsu=urn:plant;s=Pump.Flow"
sensor = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
unit = "http://qudt.org/vocab/unit/L-PER-MIN"
data_type = "Double"
"""


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def test_a_server_is_an_opc_tcp_url_and_a_mapping_file() -> None:
    assert parse_server("opc.tcp://plant:4840/ua=maps/plant.toml") == OpcUaServer(
        "opc.tcp://plant:4840/ua", Path("maps/plant.toml")
    )
    # split at the first "=": the mapping's path may hold one, an endpoint URL does not
    assert parse_server("opc.tcp://10.0.0.5:4840=a=b.toml").mapping_file == Path("a=b.toml")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("opc.tcp://plant:4840/", "give an OPC UA server as URL=MAPPING"),
        ("=plant.toml", "give an OPC UA server as URL=MAPPING"),
        ("opc.tcp://plant:4840/=", "give an OPC UA server as URL=MAPPING"),
        ("http://plant:4840/=plant.toml", "is not an opc.tcp://host:port URL"),
        ("opc.tcp://plant/=plant.toml", "is not an opc.tcp://host:port URL"),
        ("opc.tcp://plant:99999/=plant.toml", "is not a URL"),
    ],
)
def test_bad_forms_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason) as refused:
        parse_server(text)
    assert refused.value.code == "invalid_input"


def test_mappings_are_loaded_and_checked_and_a_server_is_named_once(
    mapping: Path, tmp_path: Path
) -> None:
    [(server, loaded)] = load_servers([f"opc.tcp://plant:4840/={mapping}"])
    assert server.url == "opc.tcp://plant:4840/" and len(loaded.telemetry) == 1
    with pytest.raises(OpcUaMappingError, match="cannot read the mapping"):
        load_servers([f"opc.tcp://plant:4840/={tmp_path / 'missing.toml'}"])
    broken = tmp_path / "broken.toml"
    broken.write_text(MAPPING.replace('data_type = "Double"', 'data_type = "Text"'))
    with pytest.raises(OpcUaMappingError, match=r"broken\.toml: telemetry\[0\]"):
        load_servers([f"opc.tcp://plant:4840/={broken}"])
    with pytest.raises(InvalidInputError, match="named twice"):
        load_servers([f"opc.tcp://plant:4840/={mapping}", f"opc.tcp://plant:4840/={broken}"])


def test_the_setting_is_a_json_list(monkeypatch: pytest.MonkeyPatch, mapping: Path) -> None:
    monkeypatch.setenv("TWINKG_OPCUA_SERVERS", f'["opc.tcp://a:4840/={mapping}"]')
    monkeypatch.setenv("TWINKG_OPCUA_WRITE_BACK", "true")
    settings = Settings()
    assert settings.opcua_servers == [f"opc.tcp://a:4840/={mapping}"]
    assert settings.opcua_write_back is True
    monkeypatch.delenv("TWINKG_OPCUA_SERVERS")
    monkeypatch.delenv("TWINKG_OPCUA_WRITE_BACK")
    assert Settings().opcua_servers == [] and Settings().opcua_write_back is False


_PREFIXES = st.sampled_from(["", "opc.tcp://", "opc.tcp://plant:4840", "opc.tcp://[::1]:4840/"])


@given(_PREFIXES, st.text(max_size=40), st.sampled_from(["=", "/=", ""]), st.text(max_size=80))
def test_hostile_text_gives_a_server_or_a_refusal(
    prefix: str, middle: str, equals: str, rest: str
) -> None:
    text = prefix + middle + equals + rest
    try:
        server = parse_server(text)
    except InvalidInputError:
        return
    assert server.url.startswith("opc.tcp://") and "=" not in server.url
    assert str(server.mapping_file).strip()


def test_twinkg_run_refuses_before_anything_starts(mapping: Path, tmp_path: Path) -> None:
    # no Neo4j is reachable here: a refusal that came after the store was opened would differ
    env = {
        "TWINKG_HOME": str(tmp_path),
        "TWINKG_NEO4J_URI": "bolt://127.0.0.1:1",
        "TWINKG_OPCUA_SERVERS": "[]",
    }
    cases = [
        (["--opcua", "opc.tcp://plant:4840/"], None, "invalid_input", 5),
        (["--opcua", f"http://plant:4840/={mapping}"], None, "invalid_input", 5),
        (["--opcua", f"opc.tcp://plant:4840/={tmp_path / 'x.toml'}"], None,
         "opcua_mapping_invalid", 5),
        ([], '["opc.tcp://plant:4840/"]', "invalid_input", 5),  # the setting, no --opcua
        ([], f"opc.tcp://plant:4840/={mapping}", "config_invalid", 2),  # not a JSON list
        (["--opcua", f"opc.tcp://a:1/={mapping}", "--opcua", f"opc.tcp://a:1/={mapping}"],
         None, "invalid_input", 5),
    ]  # fmt: skip
    for args, setting, code, status in cases:
        more = {} if setting is None else {"TWINKG_OPCUA_SERVERS": setting}
        done = CliRunner().invoke(app, ["run", "--no-mqtt", *args], env=env | more)
        assert done.exit_code == status, (args, done.output)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), (args, done.stderr)

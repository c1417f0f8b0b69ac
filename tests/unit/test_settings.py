"""Settings: one bad value is a ConfigError naming it, before anything runs."""

from __future__ import annotations

import pytest

from twinkg.api.settings import load_settings
from twinkg.ontology.errors import ConfigError


def test_a_watch_longer_than_the_look_back_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 0052: a watched asset's anomalies wait the watch out; a watch past the
    look-back would let them age out unseen."""
    monkeypatch.setenv("TWINKG_AGENTS_LOOKBACK_S", "3600")
    monkeypatch.setenv("TWINKG_AGENTS_WATCH_S", "3601")
    with pytest.raises(ConfigError, match=r"agents_watch_s \(3601 s\) exceeds agents_lookback_s"):
        load_settings()
    monkeypatch.setenv("TWINKG_AGENTS_WATCH_S", "3600")
    assert load_settings().agents_watch_s == 3600.0
    monkeypatch.setenv("TWINKG_AGENTS_WATCH_S", "-1")
    with pytest.raises(ConfigError, match="TWINKG_AGENTS_WATCH_S"):
        load_settings()


def test_look_ahead_workers_default_to_the_cores_and_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 0053: as many forked workers as the machine has cores, at most 4, by default;
    0 or a non-number is refused, naming the variable."""
    import os  # noqa: PLC0415

    monkeypatch.delenv("TWINKG_SIM_LOOKAHEAD_WORKERS", raising=False)
    assert load_settings().sim_lookahead_workers == min(4, os.cpu_count() or 1)
    monkeypatch.setenv("TWINKG_SIM_LOOKAHEAD_WORKERS", "1")
    assert load_settings().sim_lookahead_workers == 1
    for bad in ("0", "65", "two"):
        monkeypatch.setenv("TWINKG_SIM_LOOKAHEAD_WORKERS", bad)
        with pytest.raises(ConfigError, match="TWINKG_SIM_LOOKAHEAD_WORKERS"):
            load_settings()

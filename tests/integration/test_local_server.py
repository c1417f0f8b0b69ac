"""The local server's life cycle: it goes away, cleanly, when its parent does."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from twinkg.kg import local_server

pytestmark = pytest.mark.neo4j


def test_server_shuts_down_cleanly_when_its_parent_exits(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sleep", "600"])
    config = local_server.LocalServerConfig.throwaway(
        tmp_path, heap="512m", pagecache="64m", tx_memory="256m"
    )
    state = local_server.start(config, wait_s=240, parent_pid=parent.pid)
    assert state.running and state.pid is not None
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        finished, status = os.waitpid(state.pid, os.WNOHANG)  # the launcher is our child
        if finished == state.pid:
            break
        time.sleep(0.2)
    else:
        local_server.stop(config)
        pytest.fail("the server outlived its parent by a minute")
    assert os.waitstatus_to_exitcode(status) == 0, "the launcher did not exit cleanly"
    assert not local_server.status(config).running
    debug_log = (tmp_path / "data" / "logs" / "debug.log").read_text(encoding="utf-8")
    assert "Stopped 'DatabaseId{" in debug_log and "[neo4j]}' successfully" in debug_log
    assert "Bolt server has been shut down" in debug_log

"""A TwinKG command run as a detached background process: its pid file and log in one folder.

The HTTP API (``twinkg api start``) and the service (``twinkg service start``) both run this
way: started in a session of their own (so a stop ends the whole process group: the service's
worker processes with it), with stdout and stderr appended to ``log``, and ready when the
caller's check says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from twinkg.ontology.errors import ServerError


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class Background:
    """A background process kept under ``folder`` (``pid``, and the log ``log_name``)."""

    folder: Path
    what: str
    log_name: str = "server.log"

    @property
    def log(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.folder / self.log_name

    @property
    def pid_file(self) -> Path:
        """The file holding the process's pid while it runs."""
        return self.folder / "pid"

    def running(self) -> int | None:
        """The pid of the process started from this folder, if it still runs."""
        try:
            text = self.pid_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        pid = int(text) if text.isdigit() else 0
        if pid <= 0 or not alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        ready: Callable[[], bool],
        wait_s: float,
    ) -> int:
        """Start ``command`` detached and wait until ``ready()``; its pid. A process that exits
        first, or is not ready within ``wait_s``, is a :class:`ServerError` naming the log."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            process = subprocess.Popen(
                list(command),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=dict(env),
            )
        self.pid_file.write_text(str(process.pid), encoding="ascii")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServerError(f"{self.what} exited with {process.returncode}; see {self.log}")
            if ready():
                return process.pid
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"{self.what} was not ready within {wait_s:.0f} s; see {self.log}")

    def stop(self, *, wait_s: float = 30.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``wait_s``; ``False`` when none ran."""
        pid = self.running()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

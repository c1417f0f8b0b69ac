"""Progress bars for the CLI's long work: one bar per phase, on stderr, gone once it is done.

Bars show by default only when stderr is a terminal, so scripts and tests see the same output
with or without them (``--progress`` draws them anyway, ``--no-progress`` never). They are drawn
from the ``(phase, done, total)`` reports of ``reasoner.progress``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from twinkg.api.cli.common import err
from twinkg.reasoner.progress import Progress as ProgressReport
from twinkg.reasoner.progress import no_progress

ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="progress bars on stderr (default: only when stderr is a terminal)",
    ),
]


def wanted(progress: bool | None) -> bool:
    """Whether to draw bars: as asked, or when stderr is a terminal."""
    return err.is_terminal if progress is None else progress


@contextmanager
def phase_bars(progress: bool | None) -> Iterator[ProgressReport]:
    """A ``(phase, done, total)`` callback that draws one bar per phase while the block runs
    (and reports nothing when bars are not :func:`wanted`); the bars vanish at the end."""
    if not wanted(progress):
        yield no_progress
        return
    # Asked for on a stderr that is not a terminal: draw anyway, for logs that replay ANSI.
    console = err if err.is_terminal else Console(stderr=True, force_terminal=True)
    bars = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout stays stdout, even while the bars are drawn
    )
    tasks: dict[str, TaskID] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(str(phase), total=total, completed=done)
        else:
            bars.update(tasks[phase], total=total, completed=done)

    with bars:
        yield report

"""What several routers share: the FastAPI dependencies that reach the app's twin and agent
jobs, the path parameters naming a decision, and reading a request's media type.

Routers import this module and :mod:`api.http.auth`, :mod:`api.http.models`, never each other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from twinkg.api.http.jobs import Jobs
from twinkg.api.twin import Twin

RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""An agent run's id (or an agent job's) in a path."""

Step = Annotated[int, Path(ge=1, le=1000)]
"""A decision's step within its run, in a path."""


def twin_of(request: Request) -> Twin:
    """The twin the app's lifespan opened."""
    twin: Twin = request.app.state.twin
    return twin


TwinDep = Annotated[Twin, Depends(twin_of)]


def jobs_of(request: Request) -> Jobs:
    """The app's agent jobs."""
    jobs: Jobs = request.app.state.jobs
    return jobs


JobsDep = Annotated[Jobs, Depends(jobs_of)]


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower-case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()

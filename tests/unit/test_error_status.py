"""The HTTP status and stable code of the errors decisions 0086 adds (the README's error table)."""

from __future__ import annotations

from twinkg.api.errors import status_for
from twinkg.ontology.errors import ContextChangedError, TwinKGError


def test_a_context_that_kept_changing_is_a_conflict() -> None:
    error = ContextChangedError("the context of p changed after the guard judged d")
    assert isinstance(error, TwinKGError)
    assert (status_for(error), error.code) == (409, "context_changed")

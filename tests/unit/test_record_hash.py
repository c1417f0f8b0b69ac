"""``hashes_to`` (decision 0079) answers as ``record_hash`` does, on any JSON document.

orjson writes most documents byte for byte as ``json.dumps(sort_keys=True)`` does, but not all:
exponent floats, NaN and infinities, integers past 64 bits, keys that sort differently as UTF-8.
Whatever it writes, the verdict must be the canonical encoder's.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twinkg.kg.provenance import hashes_to, record_hash

_KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities too: json writes NaN, orjson null
    | st.sampled_from([1e-7, 1e16, 1e22, -0.0, 5e-324, 1e-5, 123456789.0])
    | _KEYS
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400)
@given(document=st.dictionaries(_KEYS, _DOCUMENTS, max_size=5), previous=st.text(max_size=8))
def test_a_document_hashes_to_its_own_record_hash(document: dict[str, Any], previous: str) -> None:
    assert hashes_to(previous, document, record_hash(previous, document))


@settings(max_examples=400)
@given(
    document=st.dictionaries(_KEYS, _DOCUMENTS, max_size=5),
    other=st.dictionaries(_KEYS, _DOCUMENTS, max_size=5),
    previous=st.text(max_size=8),
)
def test_a_changed_document_does_not(
    document: dict[str, Any], other: dict[str, Any], previous: str
) -> None:
    expected = _canonical(document) == _canonical(other)
    assert hashes_to(previous, other, record_hash(previous, document)) is expected
    assert hashes_to(previous + "x", document, record_hash(previous, document)) is False


def test_where_orjson_writes_otherwise_the_canonical_bytes_decide() -> None:
    for document in (
        {"a": 1e-7},
        {"a": float("nan")},
        {"a": 2**65},
        {"\U0001f600": 1, "\uffff": 2},
    ):
        assert hashes_to("", document, record_hash("", document)), document
    assert not hashes_to("", {"a": 1e-7}, record_hash("", {"a": 1e-6}))

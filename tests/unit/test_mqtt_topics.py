"""The state announcements' topics lie outside every other tree of the topic scheme."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from twinkg.connect.mqtt.topics import (
    ROOT,
    STATE_FILTER,
    WORK_FILTER,
    edge_filters,
    state_topic,
    telemetry_filters,
)
from twinkg.ontology.errors import InvalidInputError

_OTHER_TREES = [
    *telemetry_filters(),
    *edge_filters(),
    WORK_FILTER,
    f"{ROOT}/+/evt/#",
    f"{ROOT}/+/refused/#",
    f"{ROOT}/+/ack/#",
]
_SEGMENTS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_MESSAGE_TYPES = st.sampled_from(["tele", "edge", "work", "evt", "refused", "ack", "state"])


@given(client=_SEGMENTS | _MESSAGE_TYPES)
def test_an_announcement_reaches_the_edges_and_no_other_subscriber(client: str) -> None:
    topic = state_topic(client)
    assert topic_matches_sub(STATE_FILTER, topic)
    assert not [f for f in _OTHER_TREES if topic_matches_sub(f, topic)], topic


@pytest.mark.parametrize("client", ["", "a/b", "#", "+", "$SYS", "-x", "a" * 65])
def test_a_client_id_that_is_no_topic_segment_is_refused(client: str) -> None:
    with pytest.raises(InvalidInputError, match="client id"):
        state_topic(client)

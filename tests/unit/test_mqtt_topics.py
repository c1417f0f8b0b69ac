"""The topic scheme: state announcements lie outside every other tree, and a producer's ACL binds
it to its site and, as an edge, to its own node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from twinkg.connect.mqtt.topics import (
    ROOT,
    STATE_FILTER,
    WORK_FILTER,
    Role,
    acl_lines,
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


def _allowed(user: str, site: str, access: str, topic: str) -> bool:
    """Whether the ACL lines of a producer ``user`` of ``site`` grant ``access`` on ``topic``."""
    grants = [line.split(" ", 2)[1:] for line in acl_lines(user, Role.PRODUCER, site)]
    return any(
        how in (access, "readwrite") and topic_matches_sub(pattern, topic)
        for how, pattern in (g for g in grants if len(g) == 2)
    )


@pytest.mark.parametrize(
    ("access", "topic", "expected"),
    [
        ("write", "twinkg/v1/site-a/edge/edge-1", True),  # its own node
        ("read", "twinkg/v1/site-a/ack/edge-1", True),  # its own receipts
        ("write", "twinkg/v1/site-a/edge/edge-2", False),  # another edge of its site
        ("read", "twinkg/v1/site-a/ack/edge-2", False),  # another edge's receipts
        ("read", "twinkg/v1/site-a/ack/#", False),  # every receipt of the site
        ("write", "twinkg/v1/site-b/edge/edge-1", False),  # its own name at another site
        ("write", "twinkg/v1/site-a/tele/area/any-node", True),  # telemetry: any node, one site
    ],
)
def test_an_edge_producer_is_bound_to_its_own_node(access: str, topic: str, expected: bool) -> None:
    assert _allowed("edge-1", "site-a", access, topic) is expected


def test_a_producer_whose_name_is_no_topic_segment_is_refused() -> None:
    for name in ("gateway a", "edge/#", "+"):
        with pytest.raises(InvalidInputError, match="producer name"):
            acl_lines(name, Role.PRODUCER, "site-a")

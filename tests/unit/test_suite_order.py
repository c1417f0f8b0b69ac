"""The suite's file order (tests/conftest.py): the slow files it names exist, each once, so a
renamed or removed file does not silently drop out of the front of the queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pytest

from tests.conftest import REPO, SLOW_FILES, pytest_collection_modifyitems


def test_every_slow_file_exists_once() -> None:
    assert len(set(SLOW_FILES)) == len(SLOW_FILES)
    missing = [name for name in SLOW_FILES if not (REPO / name).is_file()]
    assert missing == []


@dataclass
class _Item:
    nodeid: str


def test_slow_files_go_first_and_every_file_keeps_its_own_order() -> None:
    quick = "tests/unit/test_quick.py"
    first, second = SLOW_FILES[0], SLOW_FILES[1]
    ids = [
        f"{quick}::a",
        f"{second}::b",
        f"{quick}::b",
        f"{first}::z",
        f"{second}::a",
        f"{first}::a[1]",
    ]
    items = [_Item(i) for i in ids]
    pytest_collection_modifyitems(cast(pytest.Config, None), cast(list[pytest.Item], items))
    assert [i.nodeid for i in items] == [
        f"{first}::z",
        f"{first}::a[1]",
        f"{second}::b",
        f"{second}::a",
        f"{quick}::a",
        f"{quick}::b",
    ]

"""``make demo``'s PostgreSQL database is the checkout's own: two checkouts on one server
never share their projects."""

from __future__ import annotations

import re
from pathlib import Path

from annotator.management.commands.demo import demo_database_name


def test_each_checkout_gets_its_own_demo_database(tmp_path: Path) -> None:
    first, second = tmp_path / "stepwise", tmp_path / "other" / "stepwise"
    first.mkdir()
    second.mkdir(parents=True)
    name = demo_database_name(first)
    assert re.fullmatch(r"stepwise_[0-9a-f]{8}", name)  # a plain PostgreSQL identifier
    assert demo_database_name(second) != name
    # The same checkout, however it is reached, keeps its database across runs.
    assert demo_database_name(first) == name
    assert demo_database_name(second / ".." / ".." / "stepwise") == name
    (tmp_path / "link").symlink_to(first)
    assert demo_database_name(tmp_path / "link") == name

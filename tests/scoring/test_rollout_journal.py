"""The rollout journal on disk: replay, a line cut by a kill, segments going once done, one
service per journal. (Killed service processes: ``test_reward_service.py`` and
``tests/annotator/test_serve_rewards.py``.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scoring.rollout_journal import JournalInUse, RolloutJournal


def records(first: int, n: int) -> list[dict]:
    return [{"key": f"k{i}", "problem": "é" * (i % 3)} for i in range(first, first + n)]


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


def test_a_restart_replays_what_was_journalled_up_to_a_line_cut_short(tmp_path: Path) -> None:
    journal = RolloutJournal(tmp_path)
    journal.append(records(0, 3))
    journal.append(records(3, 2))
    [name] = segments(tmp_path)
    with open(tmp_path / name, "ab") as fh:  # the kill came in the middle of a write
        fh.write(b'{"key": "k5", "prob')
    os.close(journal._lock_fd)  # the process died: its lock goes with it

    again = RolloutJournal(tmp_path)
    replayed = again.replay()
    assert [r["key"] for _, r in replayed] == [f"k{i}" for i in range(5)]
    assert replayed[0][1] == records(0, 1)[0]
    # new records go to a segment of their own, after the old one
    segment = again.append(records(10, 1))
    assert segment > replayed[0][0]
    assert segments(tmp_path) == [name, f"{segment:012d}.jsonl"]
    # the old segment goes once all its records are done, in whatever pieces
    again.done(replayed[0][0], 2)
    assert name in segments(tmp_path)
    again.done(replayed[0][0], 3)
    assert segments(tmp_path) == [f"{segment:012d}.jsonl"]


def test_the_active_segment_stays_until_closed_and_full_ones_rotate(tmp_path: Path) -> None:
    journal = RolloutJournal(tmp_path, segment_bytes=100)
    first = journal.append(records(0, 4))  # over 100 bytes: the next append rotates
    journal.done(first, 4)
    assert len(segments(tmp_path)) == 1  # still the one appended to
    second = journal.append(records(4, 1))
    assert second == first + 1
    assert segments(tmp_path) == [f"{second:012d}.jsonl"]  # the first was done: gone
    journal.done(second, 1)
    lines = (tmp_path / f"{second:012d}.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records(4, 1)
    journal.close()
    assert segments(tmp_path) == []


def test_records_not_done_at_close_stay_for_the_next_start(tmp_path: Path) -> None:
    journal = RolloutJournal(tmp_path)
    segment = journal.append(records(0, 3))
    journal.done(segment, 2)
    journal.close()
    again = RolloutJournal(tmp_path)
    assert [r["key"] for _, r in again.replay()] == ["k0", "k1", "k2"]


def test_one_journal_one_service(tmp_path: Path) -> None:
    journal = RolloutJournal(tmp_path)
    with pytest.raises(JournalInUse):
        RolloutJournal(tmp_path)
    journal.close()
    RolloutJournal(tmp_path).close()

"""The write journal: runs and operations keyed by id, durable across crashes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scimtools.journal import Journal, JournalError


def test_an_operation_is_recorded_before_it_is_sent_and_after(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run = journal.start_run("r1", kind="apply", fingerprint="f", plan=[{"op": "x"}])

    journal.record_sent(
        run,
        "op-1",
        op="patch",
        resource_type="User",
        resource_id="u1",
        before={"title": "a"},
        request={"method": "PATCH"},
    )
    sent = journal.operation(run, "op-1")
    journal.record_answer(run, "op-1", "applied", status=200, response={"id": "u1"})
    answered = journal.operation(run, "op-1")

    assert sent["state"] == "sent" and sent["before"] == {"title": "a"}
    assert answered["state"] == "applied"
    assert answered["status"] == 200
    assert answered["before"] == {"title": "a"}
    assert answered["response"] == {"id": "u1"}
    assert journal.events(run)["event"].tolist() == [
        "run.started",
        "op.sent",
        "op.applied",
    ]
    journal.close()


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        run = journal.start_run("r1", kind="import", meta={"source": "csv"})
        journal.record_answer(run, "op-1", "stale", op="patch", reason="changed")

    with Journal(path) as journal:
        assert journal.states("r1") == {"op-1": "stale"}
        assert journal.run("r1")["meta"] == {"source": "csv"}
        assert journal.runs()["run_id"].tolist() == ["r1"]


def test_a_run_reopens_only_with_its_own_plan(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run("r1", kind="apply", fingerprint="aaa")

    assert journal.start_run("r1", kind="apply", fingerprint="aaa") == "r1"
    with pytest.raises(JournalError, match="another plan"):
        journal.start_run("r1", kind="apply", fingerprint="bbb")
    with pytest.raises(JournalError, match="another plan"):
        journal.start_run("r1", kind="rollback", fingerprint="aaa")
    journal.close()


def test_a_resent_operation_keeps_its_first_before_state(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run = journal.start_run(kind="apply")

    for before in ({"v": 1}, {"v": 2}):
        journal.record_sent(
            run,
            "op-1",
            op="patch",
            resource_type="User",
            resource_id="u1",
            before=before,
            request=None,
        )

    record = journal.operation(run, "op-1")
    assert record["before"] == {"v": 1}
    assert record["attempts"] == 2
    journal.close()


def test_unknown_runs_and_states_are_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")

    with pytest.raises(JournalError, match="no run 'nope'"):
        journal.run("nope")
    with pytest.raises(ValueError, match="state must be one of"):
        journal.record_answer("r", "op", "done")
    journal.close()


def test_rollbacks_are_children_of_their_run(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run("r1", kind="apply")
    journal.start_run("r2", kind="rollback", parent_run_id="r1")

    assert journal.children("r1") == ["r2"]
    assert journal.children("r1", kind="apply") == []
    journal.close()


def test_threads_can_record_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    run = journal.start_run(kind="apply")

    def record(worker: int) -> None:
        for i in range(25):
            journal.record_answer(run, f"op-{worker}-{i}", "applied", op="patch")

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert journal.counts(run) == {"applied": 200}
    journal.close()


WRITER = """
import sys
from scimtools.journal import Journal
journal = Journal(sys.argv[1])
run = journal.start_run("r", kind="apply")
print("ready", flush=True)
i = 0
while True:
    journal.record_sent(run, f"op-{i}", op="patch", resource_type="User",
                        resource_id="u", before={"i": i}, request=None)
    journal.record_answer(run, f"op-{i}", "applied", status=200)
    i += 1
"""


def test_a_kill_9_loses_no_committed_record(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    with Journal(path) as journal:
        ops = journal.operations("r")
        events = journal.events("r")
    assert len(ops) > 10
    # Every op but possibly the last is applied; the events agree with the states.
    assert set(ops["state"].iloc[:-1]) == {"applied"}
    assert (events["event"] == "op.applied").sum() == (ops["state"] == "applied").sum()

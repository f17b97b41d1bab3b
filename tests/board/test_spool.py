"""The durable spool: atomic moves, crash recovery from the folders alone, pruning, disk checks."""
import json
import os
import time

import pytest

from boardcore.errors import DiskFull, SpoolError
from boardcore.spool import META, RESULTS, STATES, WORKLOAD, Spool, WorkMeta
from qickbase.atomicfile import PendingFile

pytestmark = pytest.mark.device310


def _add(spool, state, work_id, received=1.0, **meta):
    folder = spool.path(state, work_id)
    folder.mkdir(parents=True)
    (folder / WORKLOAD).write_bytes(b"gz")
    spool.write_meta(state, WorkMeta(work_id, received_at=received, **meta))
    return folder


def test_move_is_one_rename_and_keeps_meta(tmp_path):
    spool = Spool(tmp_path).ensure()
    assert sorted(os.listdir(tmp_path)) == sorted(STATES)
    _add(spool, "ready", "w1")
    meta = spool.read_meta("ready", "w1")
    meta.attempts = 1
    spool.move("w1", "ready", "running", meta)
    assert spool.find("w1") == "running"
    assert spool.read_meta("running", "w1").attempts == 1
    assert (spool.path("running", "w1") / WORKLOAD).read_bytes() == b"gz"
    assert spool.depths() == {"incoming": 0, "ready": 0, "running": 1, "outgoing": 0, "done": 0}


def test_move_of_missing_work_is_a_clear_error(tmp_path):
    spool = Spool(tmp_path).ensure()
    with pytest.raises(SpoolError, match="w9 is not in ready/"):
        spool.move("w9", "ready", "running")


def test_unsafe_work_ids_are_refused(tmp_path):
    spool = Spool(tmp_path).ensure()
    for bad in ("../etc", "", ".hidden", "a/b", "x.tmp"):
        with pytest.raises(SpoolError):
            spool.path("ready", bad)


def test_moving_over_a_stale_done_copy_replaces_it(tmp_path):
    spool = Spool(tmp_path).ensure()
    _add(spool, "done", "w1")
    _add(spool, "incoming", "w1", received=5.0)
    spool.move("w1", "incoming", "done")
    assert spool.read_meta("done", "w1").received_at == 5.0


def test_ids_are_in_arrival_order(tmp_path):
    spool = Spool(tmp_path).ensure()
    _add(spool, "ready", "b", received=2.0)
    _add(spool, "ready", "a", received=3.0)
    _add(spool, "ready", "c", received=1.0)
    assert spool.ids("ready") == ["c", "b", "a"]


def test_a_meta_write_killed_before_its_rename_keeps_the_old_meta_and_recovery_drops_the_temp(
        tmp_path):
    spool = Spool(tmp_path).ensure()
    folder = _add(spool, "ready", "w1", attempts=1)
    # the writer dies after writing its temporary file, before the rename
    killed = PendingFile(folder, name=META)
    killed.file.write(b'{"work_id": "w1", "attempts": 2')
    killed.file.close()
    assert spool.read_meta("ready", "w1").attempts == 1 and spool.ids("ready") == ["w1"]
    spool.recover()
    assert sorted(os.listdir(folder)) == [META, WORKLOAD]
    spool.write_meta("ready", WorkMeta("w1", attempts=3))
    assert spool.read_meta("ready", "w1").attempts == 3
    assert sorted(os.listdir(folder)) == [META, WORKLOAD]


def test_recover_with_work_in_every_folder(tmp_path):
    spool = Spool(tmp_path).ensure()
    _add(spool, "incoming", "partial")
    _add(spool, "ready", "waiting")
    _add(spool, "running", "interrupted", attempts=1)
    _add(spool, "outgoing", "finished", outcome="DONE", has_results=True)
    _add(spool, "done", "old")
    (tmp_path / "ready" / "junk.tmp").mkdir()
    (spool.path("outgoing", "finished") / (RESULTS + ".tmp")).write_bytes(b"x")
    report = spool.recover()
    assert report == {"dropped": ["partial"], "failed": ["interrupted"], "rerun": []}
    assert spool.depths() == {"incoming": 0, "ready": 1, "running": 0, "outgoing": 2, "done": 1}
    failed = spool.read_meta("outgoing", "interrupted")
    assert failed.outcome == "FAILED" and failed.error_kind == "board_restarted"
    assert "restarted while this workload was running" in failed.error_message
    assert not (tmp_path / "ready" / "junk.tmp").exists()
    assert not list(spool.path("outgoing", "finished").glob("*.tmp"))
    # recovering twice changes nothing: every workload is in exactly one folder
    assert spool.recover() == {"dropped": [], "failed": [], "rerun": []}


def test_recover_can_rerun_interrupted_work_a_bounded_number_of_times(tmp_path):
    spool = Spool(tmp_path).ensure()
    _add(spool, "running", "once", attempts=1)
    _add(spool, "running", "twice", attempts=2)
    report = spool.recover(rerun_interrupted=True, max_attempts=2)
    assert report["rerun"] == ["once"] and report["failed"] == ["twice"]


def test_recover_survives_a_missing_meta(tmp_path):
    spool = Spool(tmp_path).ensure()
    spool.path("running", "nometa").mkdir()
    spool.recover()
    assert spool.read_meta("outgoing", "nometa").outcome == "FAILED"


def test_prune_done_by_age_then_size(tmp_path):
    spool = Spool(tmp_path).ensure()
    now = time.time()
    for i, age in enumerate([1000, 50, 40, 30]):
        folder = _add(spool, "done", f"w{i}")
        (folder / RESULTS).write_bytes(b"r" * 1000)
        os.utime(folder / META, (now - age, now - age))
    assert spool.prune_done(max_age=500, max_bytes=10**9, now=now) == ["w0"]
    assert spool.prune_done(max_age=500, max_bytes=3000, now=now) == ["w1"]
    assert spool.ids("done") == ["w2", "w3"]


def test_full_disk_stops_new_work_with_a_clear_message(tmp_path):
    spool = Spool(tmp_path, min_free_bytes=2**62).ensure()
    assert not spool.has_room()
    with pytest.raises(DiskFull, match="no new work is taken"):
        spool.create_incoming("w1")


def test_unwritable_spool_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match="set \\[supervisor\\] spool"):
        Spool(blocker / "spool").ensure()


def test_meta_tolerates_unknown_fields(tmp_path):
    spool = Spool(tmp_path).ensure()
    folder = spool.path("ready", "w1")
    folder.mkdir()
    (folder / META).write_text(json.dumps({"work_id": "w1", "future_field": 1}))
    assert spool.read_meta("ready", "w1").work_id == "w1"

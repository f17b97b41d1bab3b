"""The one atomic write: a crash or an error at any step leaves the old file and no temp."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from qickbase import atomicfile
from qickbase.atomicfile import PendingFile, atomic_open, atomic_write, fsync_dir, replace

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10


class FakeOS:
    """The OS seam of ``qickbase.atomicfile``: records fsync (file or folder) and replace,
    and fails the step it is told to with the errno it is given."""

    def __init__(self, monkeypatch, fail: str | None = None, err: int = errno.EIO):
        self.events: list[str] = []
        self.fail, self.err = fail, err
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            kind = "fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"
            self.events.append(kind)
            if self.fail == kind:
                raise OSError(self.err, os.strerror(self.err))
            real_fsync(fd)

        def replace_(src, dst):
            self.events.append("replace")
            if self.fail == "replace":
                raise OSError(self.err, os.strerror(self.err))
            real_replace(src, dst)

        monkeypatch.setattr(atomicfile.os, "fsync", fsync)
        monkeypatch.setattr(atomicfile.os, "replace", replace_)


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_write_syncs_the_file_renames_then_syncs_the_folder(tmp_path, monkeypatch):
    fake = FakeOS(monkeypatch)
    atomic_write(tmp_path / "meta.json", b"{}")
    assert fake.events == ["fsync file", "replace", "fsync dir"]
    assert (tmp_path / "meta.json").read_bytes() == b"{}" and names(tmp_path) == ["meta.json"]


@pytest.mark.parametrize("step", ["fsync file", "replace"])
def test_a_failure_before_the_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, step):
    target = tmp_path / "meta.json"
    atomic_write(target, b"old")
    FakeOS(monkeypatch, fail=step)
    with pytest.raises(OSError) as err:
        atomic_write(target, b"new")
    assert err.value.errno == errno.EIO
    assert target.read_bytes() == b"old" and names(tmp_path) == ["meta.json"]


def test_text_is_written_as_utf8_and_replaces_the_old_file(tmp_path):
    target = tmp_path / "conf.ini"
    atomic_write(target, b"old")
    atomic_write(str(target), "[x]\nname = Zoë\n")
    assert target.read_text(encoding="utf-8") == "[x]\nname = Zoë\n"
    assert names(tmp_path) == ["conf.ini"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_are_private_unless_asked_and_the_umask_still_narrows(tmp_path, umask_022):
    atomic_write(tmp_path / "secret", "s")
    atomic_write(tmp_path / "unit", "u", mode=0o644)
    with atomic_open(tmp_path / "results") as out:
        out.write(b"r")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "unit").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o600
    os.umask(0o077)
    atomic_write(tmp_path / "narrowed", "n", mode=0o644)
    assert stat.S_IMODE((tmp_path / "narrowed").stat().st_mode) == 0o600


def test_a_replaced_secret_is_private_from_its_first_byte(tmp_path, monkeypatch, umask_022):
    """The temp file is created 0600: never readable by others, not even before the rename."""
    target = tmp_path / "credentials"
    atomic_write(target, "old", mode=0o644)
    modes = []
    real_replace = os.replace

    def replace_(src, dst):
        modes.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(atomicfile.os, "replace", replace_)
    atomic_write(target, "secret")
    assert modes == [0o600] and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_stream_is_committed_on_a_clean_exit_only(tmp_path):
    target = tmp_path / "results.h5"
    atomic_write(target, b"old")
    with pytest.raises(ValueError, match="too large"):
        with atomic_open(target) as out:
            out.write(b"x" * 1000)
            raise ValueError("too large")  # the caller's size limit
    assert target.read_bytes() == b"old" and names(tmp_path) == ["results.h5"]
    with atomic_open(target) as out:
        for _ in range(100):
            out.write(b"y" * 1000)
        assert target.read_bytes() == b"old"  # nothing shows before the commit
    assert target.read_bytes() == b"y" * 100_000 and names(tmp_path) == ["results.h5"]


def test_a_full_disk_while_streaming_leaves_no_temp(tmp_path, monkeypatch):
    FakeOS(monkeypatch, fail="fsync file", err=errno.ENOSPC)
    with pytest.raises(OSError) as err:
        with atomic_open(tmp_path / "w.gz") as out:
            out.write(b"z" * 10)
    assert err.value.errno == errno.ENOSPC and names(tmp_path) == []


def test_a_missing_folder_is_an_error_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "gone" / "meta.json", b"{}")
    assert names(tmp_path) == []


def test_a_temp_left_by_a_crash_is_hidden_and_ends_in_tmp(tmp_path):
    """A process killed mid-write leaves its temp: named so recovery can find it."""
    pending = PendingFile(tmp_path, name="meta.json")
    pending.file.write(b"half")
    pending.file.flush()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".meta.json.") and left.name.endswith(atomicfile.TMP_SUFFIX)
    pending.discard()
    assert names(tmp_path) == []


def test_a_pending_file_from_another_folder_is_committed_durably(tmp_path, monkeypatch):
    staging, final = tmp_path / "tmp", tmp_path / "results"
    staging.mkdir()
    final.mkdir()
    pending = PendingFile(staging, name="upload")
    pending.file.write(b"data")
    pending.sync()
    assert pending.path.read_bytes() == b"data"  # synced: readable before the commit
    fake = FakeOS(monkeypatch)
    pending.commit(final / "r1")
    assert fake.events == ["replace", "fsync dir", "fsync dir"]  # both folders
    assert (final / "r1").read_bytes() == b"data" and names(staging) == []
    pending.discard()  # nothing once committed
    assert (final / "r1").read_bytes() == b"data"


def test_a_discarded_pending_file_cannot_be_committed(tmp_path):
    pending = PendingFile(tmp_path)
    pending.discard()
    with pytest.raises(ValueError, match="discarded"):
        pending.commit(tmp_path / "x")
    assert names(tmp_path) == []


def test_a_failed_commit_removes_the_temp(tmp_path, monkeypatch):
    pending = PendingFile(tmp_path, name="f")
    pending.file.write(b"1")
    FakeOS(monkeypatch, fail="replace")
    with pytest.raises(OSError):
        pending.commit(tmp_path / "f")
    assert names(tmp_path) == []


def test_replace_moves_a_folder_and_syncs_both_parents(tmp_path, monkeypatch):
    (tmp_path / "ready" / "w1").mkdir(parents=True)
    (tmp_path / "running").mkdir()
    fake = FakeOS(monkeypatch)
    replace(tmp_path / "ready" / "w1", tmp_path / "running" / "w1")
    assert fake.events == ["replace", "fsync dir", "fsync dir"]
    assert (tmp_path / "running" / "w1").is_dir() and names(tmp_path / "ready") == []


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOTSUP])
def test_a_folder_fsync_the_filesystem_cannot_do_is_skipped(tmp_path, monkeypatch, err):
    FakeOS(monkeypatch, fail="fsync dir", err=err)
    fsync_dir(tmp_path)
    atomic_write(tmp_path / "f", b"1")
    assert (tmp_path / "f").read_bytes() == b"1"


def test_a_folder_fsync_that_fails_with_eio_is_raised(tmp_path, monkeypatch):
    FakeOS(monkeypatch, fail="fsync dir", err=errno.EIO)
    with pytest.raises(OSError) as err:
        fsync_dir(tmp_path)
    assert err.value.errno == errno.EIO

"""Results files both ways: a file laid out as the original device client (qick_client.py)
writes it reads through our ``WorkloadManager`` (the original protocol and our pairs), and
a file our executor writes reads the original way (the groups under ``data`` in creation
order, ``res["avg"][...]``, ``res["raw"][...]`` as the demo notebook's analysis uses them).

The original layout: ``data`` created with ``track_order=True``, one group per program named
``str(i)``; accumulated programs get ``avg`` (n_ro, n_reads, 2) and, when asked, ``raw``
(n_ro, shots * n_reads, 2) and ``shots`` (n_ro, shots * n_reads), both lzf-compressed;
decimated programs get ``dec`` (n_ro, samples, 2). No attributes anywhere.
"""
from __future__ import annotations

import tempfile

import h5py
import numpy as np
import pytest

from executor.runner import open_board, run_workload
from executor.simboard import Resonator
from tests.qick.programs import LoopV1
from userclient import WorkloadManager

PROGRAMS = 12          # more than 10: creation order ("2" before "10") is not name order
REPS = 6
FREQS = [290.0 + 2 * k for k in range(PROGRAMS - 1)]


@pytest.fixture
def board():
    return open_board("simulated", "zcu216-v1", seed=3, resonator=Resonator(f0=300.0))


class Sweep(WorkloadManager):
    """A decimated program, then an accumulated sweep (raw on all, shots on the first)."""

    def __init__(self, soccfg):
        self.groups = []
        super().__init__(soccfg)

    def do_stuff(self, make_progs=False, write_progs=False, read_results=False):
        for k, f in enumerate([300.0] + FREQS):
            if make_progs:
                self.add_program(LoopV1(self.soccfg, {"gen": 1, "ro_len": 100, "freq": f,
                                                      "reps": 1 if k == 0 else REPS}))
                continue
            prog = next(self.prog_iterator)
            if write_progs:
                if k == 0:
                    self.add_decimated(prog)
                elif k == 1:  # shots need a threshold: ours, beside the original calls
                    self.add(prog, save_raw=True, save_shots=True, threshold=0.0)
                else:
                    self.add_acquire(prog, save_raw=True)
            if read_results:
                res = next(self.result_iterator)
                self.groups.append((res.name, {name: res[name][...] for name in res}))


def write_like_the_original(handle, programs):
    """The original device client's file: what its loop over the programs creates."""
    rng = np.random.default_rng(0)
    with h5py.File(handle, "w") as out:
        data = out.create_group("data", track_order=True)
        for i, prog in enumerate(programs):
            group = data.create_group(str(i))
            if i == 0:
                length = prog.ro_chs[0]["length"]
                group.create_dataset("dec", data=rng.normal(size=(1, length, 2)))
                continue
            raw = rng.integers(-1000, 1000, size=(1, REPS, 2)).astype(np.int32)
            group.create_dataset("avg", data=raw.mean(axis=1, keepdims=True) / 100)
            group.create_dataset("raw", data=raw, compression="lzf")
            if i == 1:
                group.create_dataset("shots", data=(raw[..., 0] > 0).astype(np.int32),
                                     compression="lzf")


def test_a_file_written_the_original_way_reads_through_both_protocols(board):
    expt = Sweep(board.soccfg)
    with expt.write_progs() as workload:
        assert workload.read(2) == b"\x1f\x8b"           # gzip, as the original writes it
    with tempfile.TemporaryFile() as results:
        write_like_the_original(results, expt.proglist)
        results.seek(0)
        pairs = list(expt.read_results(results))

    names = [name for name, _ in expt.groups]
    assert names == [f"/data/{i}" for i in range(PROGRAMS)]   # creation order
    assert set(expt.groups[0][1]) == {"dec"}
    assert set(expt.groups[1][1]) == {"avg", "raw", "shots"}
    assert set(expt.groups[2][1]) == {"avg", "raw"}
    assert expt.groups[2][1]["raw"].shape == (1, REPS, 2)

    # our pairs: the same programs and arrays, the original's shapes kept as they are
    assert [p for p, _ in pairs] == expt.proglist
    assert [r.index for _, r in pairs] == list(range(PROGRAMS))
    assert [r.acqtype for _, r in pairs] == ["decimated"] + ["accumulated"] * (PROGRAMS - 1)
    assert np.array_equal(pairs[0][1].dec[0], expt.groups[0][1]["dec"][0])
    assert np.array_equal(pairs[1][1].raw[0], expt.groups[1][1]["raw"][0])
    assert pairs[1][1].shots[0].shape == (REPS,) and pairs[2][1].shots is None


def test_a_file_our_executor_writes_reads_the_original_way(board, tmp_path):
    expt = Sweep(board.soccfg)
    expt.write_progs(tmp_path / "w.json.gz")
    outcome = run_workload(str(tmp_path / "w.json.gz"), str(tmp_path / "r.h5"), board)
    assert outcome.status == "DONE", outcome

    # the original reader: iterate data/ in creation order, take the datasets as arrays
    with h5py.File(tmp_path / "r.h5", "r") as f:
        groups = list(f["data"].items())
        assert [name for name, _ in groups] == [str(i) for i in range(PROGRAMS)]
        dec = groups[0][1]["dec"][...]
        assert dec.shape == (1, expt.proglist[0].ro_chs[0]["length"], 2)
        first = groups[1][1]
        assert first["avg"][...].shape == (1, 1, 2)
        assert first["raw"][...].shape == (1, REPS, 2) and first["raw"].compression == "lzf"
        assert first["shots"].shape == (1, REPS) and first["shots"].compression == "lzf"
        assert "shots" not in groups[2][1]
        # the demo notebook's analysis of one sweep point works on it as it is: the mean
        # of the single shots is the average (no threshold on this one)
        point = groups[2][1]
        raw = point["raw"][...]
        iq = raw.dot(np.array([1, 1j])) / expt.proglist[2].ro_chs[0]["length"]
        assert iq.mean(axis=1).shape == (1,) and abs(iq.mean()) > 100
        assert np.allclose(iq.mean(axis=1), point["avg"][:, 0, :].dot([1, 1j]), rtol=1e-6)

    # and through WorkloadManager: the original protocol, and qick's own shapes in our pairs
    reader = Sweep(board.soccfg)
    pairs = list(reader.read_results(tmp_path / "r.h5"))
    assert [name for name, _ in reader.groups] == [f"/data/{i}" for i in range(PROGRAMS)]
    assert pairs[1][1].raw[0].shape == (REPS, 1, 2)               # prog.get_raw()'s shape
    assert pairs[1][1].shots[0].shape == (REPS, 1)                # prog.get_shots()'s
    assert np.array_equal(pairs[2][1].raw[0].reshape(REPS, 2), raw[0])

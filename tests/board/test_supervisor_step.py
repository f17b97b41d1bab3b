"""Direct tests of one pass of the supervisor's loop (``Supervisor.step``) with a fake OS
layer, in the manner of supervisord's tests: the children are fake processes
(``FakeProcesses``, the ``supervisor.children.Processes`` seam), the bus is a fake that
holds messages, and the clock is a number the test moves. No process is started and no
test waits: reap and restart, heartbeat and start timeouts, flapping, drain, deadline."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from boardcore.settings import load_settings
from boardcore.spool import WORKLOAD, WorkMeta
from supervisor.daemon import Supervisor
from supervisor.systemd import SystemdNotify
from supervisor.policy import ChildStatus

pytestmark = pytest.mark.device310


class FakeProcess:
    """What ``Processes.start`` answers: a process that exits when the test says so, or on
    a signal its group receives (SIGKILL always; SIGTERM unless it ``ignores_term``)."""

    def __init__(self, pid: int, argv: List[str], env: Dict[str, str]):
        self.pid, self.argv, self.env = pid, argv, env
        self.returncode: Optional[int] = None
        self.ignores_term = False

    def poll(self) -> Optional[int]:
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.argv, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.receive(sig)

    def receive(self, sig: int) -> None:
        if self.returncode is None and (sig == signal.SIGKILL or
                                        (sig == signal.SIGTERM and not self.ignores_term)):
            self.returncode = -sig

    def exit(self, code: int) -> None:
        self.returncode = code


class FakeProcesses:
    """The fake OS layer: records every start and every signal sent to a process group."""

    def __init__(self) -> None:
        self.started: List[FakeProcess] = []
        self.signals: List[Tuple[int, int]] = []
        self.refuse_next: Optional[OSError] = None
        self._next_pid = 4000

    def start(self, argv: List[str], env: Dict[str, str], stderr=None) -> FakeProcess:
        if self.refuse_next is not None:
            exc, self.refuse_next = self.refuse_next, None
            raise exc
        self._next_pid += 1
        proc = FakeProcess(self._next_pid, list(argv), dict(env))
        self.started.append(proc)
        return proc

    def killpg(self, pgid: int, sig: int) -> None:
        self.signals.append((pgid, sig))
        proc = next((p for p in self.started if p.pid == pgid), None)
        if proc is None or proc.returncode is not None:
            raise ProcessLookupError(pgid)  # a reaped group is gone
        proc.receive(sig)

    def of(self, name: str) -> List[FakeProcess]:
        """The processes started for one child, oldest first."""
        return [p for p in self.started if f"{name}.main" in p.argv]

    def signals_to(self, proc: FakeProcess) -> List[int]:
        return [sig for pgid, sig in self.signals if pgid == proc.pid]


class FakeBus:
    """The supervisor's end of the bus: messages the test queued, and what was sent."""
    address = "ipc:///fake-run-dir/bus"

    def __init__(self) -> None:
        self.inbox: List[Tuple[bytes, Dict[str, Any]]] = []
        self.sent: List[Tuple[bytes, str, Dict[str, Any]]] = []
        self.closed = False

    def recv(self, timeout: float) -> List[Tuple[bytes, Dict[str, Any]]]:
        out, self.inbox = self.inbox, []
        return out

    def send(self, identity: bytes, kind: str, /, **fields: Any) -> None:
        self.sent.append((identity, kind, fields))

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Board:
    """A supervisor on the fakes, with the moves a test makes."""

    def __init__(self, tmp_path: Path, environ: Optional[Dict[str, str]] = None,
                 **sections: Dict[str, str]):
        values = {
            "supervisor": {"spool": str(tmp_path / "spool"), "run_dir": str(tmp_path / "run"),
                           "heartbeat_seconds": "1", "heartbeat_timeout_seconds": "3",
                           "start_timeout_seconds": "10", "restart_max": "2",
                           "restart_period_seconds": "60", "restart_slow_seconds": "60",
                           "backoff_base_seconds": "0.5", "backoff_max_seconds": "2",
                           "stop_timeout_seconds": "20", "min_free_mb": "0"},
            "executor": {"board": "simulated", "grace_seconds": "2", "deadline_seconds": "30",
                         "deadline_margin_seconds": "5"},
        }
        for section, more in sections.items():
            values.setdefault(section, {}).update(more)
        config = tmp_path / "config"
        config.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in
                                                               keys.items())
                                  for section, keys in values.items()))
        self.clock, self.os, self.bus = Clock(), FakeProcesses(), FakeBus()
        self.systemd = SystemdNotify(environ or {})  # no NOTIFY_SOCKET: it counts, sends nothing
        self.sup = Supervisor(load_settings(config), str(config), None, systemd=self.systemd,
                              clock=self.clock, processes=self.os)
        self.sup.bus = self.bus
        self.sup.setup()
        self.spool = self.sup.spool

    def step(self, after: float = 0.0) -> bool:
        self.clock.now += after
        return self.sup.step(self.clock.now)

    def idle(self, seconds: float, tick: float = 1.0, silent: tuple = ()) -> bool:
        """Let ``seconds`` pass in passes of at most ``tick``, every live child beating but
        the ``silent`` ones."""
        done = False
        while seconds > 1e-9:
            for name, child in self.sup.children.items():
                if child.alive() and child.identity is not None and name not in silent:
                    self.say(name, "heartbeat")
            done = self.step(after=min(tick, seconds))
            seconds -= min(tick, seconds)
        return done

    def proc(self, name: str) -> FakeProcess:
        return self.os.of(name)[-1]

    def say(self, name: str, kind: str, **fields: Any) -> None:
        proc = self.proc(name)
        self.bus.inbox.append((f"{name}-{proc.pid}".encode(), {"type": kind, **fields}))

    def hello(self, *names: str) -> None:
        for name in names:
            self.say(name, "hello", pid=self.proc(name).pid, network="private")

    def up(self) -> None:
        """All three started and said hello."""
        self.step()
        self.hello("downloader", "executor", "uploader")
        self.step()
        assert self.states() == {"downloader": "RUNNING", "executor": "RUNNING",
                                 "uploader": "RUNNING"}

    def states(self) -> Dict[str, str]:
        return {name: c.status.value for name, c in self.sup.children.items()}

    def sent(self, name: str, kind: str) -> List[Dict[str, Any]]:
        proc = self.proc(name)
        return [f for identity, k, f in self.bus.sent
                if identity == f"{name}-{proc.pid}".encode() and k == kind]

    def ready_work(self, work_id: str) -> None:
        """The downloader put a workload in ready/ and says so."""
        folder = self.spool.create_incoming(work_id)
        (folder / WORKLOAD).write_bytes(b"workload")
        self.spool.move(work_id, "incoming", "ready", WorkMeta(work_id, received_at=1.0, size=8))
        self.say("downloader", "work", work_id=work_id)

    def running_job(self, work_id: str = "w1") -> Dict[str, Any]:
        """Ready work handed to the executor: answers the run message."""
        self.ready_work(work_id)
        self.step()
        runs = self.sent("executor", "run")
        assert runs and runs[-1]["work_id"] == work_id, self.bus.sent
        return runs[-1]


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


def test_first_pass_starts_every_child_and_hello_makes_it_running(board: Board):
    assert board.states() == {"downloader": "STOPPED", "executor": "STOPPED",
                              "uploader": "STOPPED"}
    board.step()
    assert [len(board.os.of(n)) for n in ("downloader", "executor", "uploader")] == [1, 1, 1]
    assert set(board.states().values()) == {"STARTING"}
    board.hello("executor")
    board.step()
    assert board.states()["executor"] == "RUNNING"
    assert board.states()["downloader"] == "STARTING"
    assert board.sent("executor", "ping"), "a running child is pinged at once"


def test_a_hello_from_a_predecessor_is_stale_and_dropped(board: Board):
    board.step()
    board.bus.inbox.append((b"executor-1", {"type": "hello", "pid": 1}))
    board.step()
    assert board.states()["executor"] == "STARTING"


def test_a_child_that_exits_is_reaped_and_restarted_after_its_backoff(board: Board):
    board.up()
    first = board.proc("uploader")
    first.exit(3)
    board.step()
    uploader = board.sup.children["uploader"]
    assert uploader.status == ChildStatus.BACKOFF and uploader.tracker.restarts == 1
    assert uploader.tracker.reason == "exited with 3"
    assert board.os.signals_to(first) == [signal.SIGKILL]  # what it left in its group goes
    assert uploader.proc is None and uploader.last_pid == first.pid
    board.step(after=0.6)  # past the first backoff's ceiling (0.5 s)
    assert uploader.status == ChildStatus.STARTING and board.proc("uploader") is not first
    assert board.states()["downloader"] == "RUNNING"  # the others were left alone


def test_the_last_words_of_a_child_explain_its_exit(board: Board):
    board.up()
    board.say("downloader", "farewell", pid=board.proc("downloader").pid,
              error="the credentials file is not readable")
    board.step()
    board.proc("downloader").exit(2)
    board.step()
    reason = board.sup.children["downloader"].tracker.reason
    assert reason == "exited with 2: the credentials file is not readable"


def test_a_child_that_cannot_be_started_backs_off_like_a_crash(board: Board):
    board.os.refuse_next = OSError(24, "Too many open files")
    board.step()
    downloader = board.sup.children["downloader"]
    assert downloader.status == ChildStatus.BACKOFF
    assert "cannot start" in downloader.tracker.reason
    assert "Too many open files" in downloader.tracker.reason
    board.step(after=0.6)
    assert downloader.status == ChildStatus.STARTING


def test_flapping_makes_the_child_fatal_and_the_board_error_until_the_slow_retry(board: Board):
    board.up()
    for _ in range(3):  # restart_max = 2 within 60 s: the third death is one too many
        board.proc("executor").exit(1)
        board.step()
        if board.states()["executor"] == "BACKOFF":
            board.step(after=2.1)  # past any backoff (cap 2 s)
            board.hello("executor")
            board.step()
    executor = board.sup.children["executor"]
    assert executor.status == ChildStatus.FATAL and executor.tracker.restarts == 3
    assert board.sup.board_state()[0] == "ERROR"
    started = len(board.os.of("executor"))
    board.step(after=59)
    assert len(board.os.of("executor")) == started, "a fatal child is not restarted quickly"
    board.step(after=1.1)
    assert len(board.os.of("executor")) == started + 1 and executor.status == ChildStatus.STARTING


def test_a_silent_running_child_is_killed_as_unresponsive_and_restarted(board: Board):
    board.up()
    executor = board.proc("executor")
    for name in ("downloader", "executor", "uploader"):
        board.say(name, "heartbeat")  # any message counts as a heartbeat
    board.step(after=2.0)  # read (heard) at this pass
    board.step(after=2.5)  # 2.5 s after the last word: within the 3 s timeout
    assert board.os.signals_to(executor) == []
    board.say("downloader", "heartbeat")
    board.say("uploader", "heartbeat")
    board.step(after=1.0)  # the executor: 3.5 s of silence
    assert board.os.signals_to(executor) == [signal.SIGKILL]
    assert board.sup.children["executor"].killed_for == "unresponsive"
    board.step()
    assert board.sup.children["executor"].tracker.reason == "killed by signal 9"
    board.step(after=0.6)
    assert board.proc("executor") is not executor
    assert board.states()["downloader"] == "RUNNING"


def test_a_child_that_never_says_hello_is_killed_at_the_start_timeout(board: Board):
    board.step()
    board.hello("downloader", "uploader")
    board.step(after=9.0)
    executor = board.proc("executor")
    assert board.os.signals_to(executor) == []
    board.step(after=1.5)  # 10.5 s after its start: past start_timeout_seconds = 10
    assert board.os.signals_to(executor) == [signal.SIGKILL]
    assert board.sup.children["executor"].killed_for == "unresponsive"


#: WATCHDOG_USEC of 0.75 s: a ping every 0.25 s; passes of 1/16 s (exact in binary)
WATCHDOG, TICK = {"WATCHDOG_USEC": "750000"}, 0.0625


def test_watchdog_pings_at_a_third_of_its_interval_while_all_are_healthy(tmp_path: Path):
    board = Board(tmp_path, environ=WATCHDOG)
    board.step()
    assert not board.systemd.ready_sent, "READY only once all three said hello"
    board.hello("downloader", "executor", "uploader")
    board.step()
    assert board.systemd.ready_sent
    before = board.systemd.pings
    board.idle(2.0, tick=TICK)
    assert board.systemd.pings - before == 8


def test_a_child_late_by_half_its_timeout_stops_the_pings_until_it_is_replaced(
        tmp_path: Path):
    board = Board(tmp_path, environ=WATCHDOG)
    board.up()
    board.idle(1.0, tick=TICK)
    uploader = board.proc("uploader")
    pinging = board.systemd.pings
    board.idle(1.25, tick=TICK, silent=("uploader",))  # within half its 3 s timeout
    assert board.systemd.pings - pinging == 5
    board.idle(0.5, tick=TICK, silent=("uploader",))  # 1.75 s silent: late
    stopped = board.systemd.pings
    board.idle(1.0, tick=TICK, silent=("uploader",))  # 2.75 s: not yet replaced
    assert board.systemd.pings == stopped, "pings went on while a child was late"
    assert board.os.signals_to(uploader) == []
    board.idle(0.5, tick=TICK, silent=("uploader",))  # 3.25 s: killed, reaped
    assert board.os.signals_to(uploader)[0] == signal.SIGKILL
    assert board.sup.children["uploader"].proc is not uploader
    assert board.systemd.pings > stopped, "pings resume once the late child is gone"


def test_ready_work_goes_to_the_running_executor(board: Board):
    board.up()
    run = board.running_job("w1")
    assert run["workload_path"].endswith(f"running/w1/{WORKLOAD}")
    assert board.spool.find("w1") == "running"
    assert board.sup.board_state()[0] == "BUSY"


def test_the_executor_dying_mid_workload_files_it_failed(board: Board):
    board.up()
    board.running_job("w1")
    board.proc("executor").receive(signal.SIGKILL)
    board.step()
    meta = board.spool.read_meta("outgoing", "w1")
    assert meta.outcome == "FAILED" and meta.error_kind == "crashed"
    assert "out-of-memory" in meta.error_message
    assert board.sup.work.job is None


def test_a_workload_past_its_deadline_and_margin_gets_sigterm_then_sigkill_after_the_grace(
        board: Board):
    board.up()
    board.running_job("w1")
    executor = board.proc("executor")
    executor.ignores_term = True  # stuck in a program: only SIGKILL ends it
    board.idle(34.0)  # past its own 30 s deadline: the executor's to stop; not the margin
    assert board.os.signals_to(executor) == []
    board.idle(1.5)  # past deadline + margin (35 s): the parent's backstop
    assert board.os.signals_to(executor) == [signal.SIGTERM]
    board.idle(1.0)
    assert board.os.signals_to(executor) == [signal.SIGTERM]  # grace: 2 s
    board.idle(1.5)
    assert board.os.signals_to(executor)[:2] == [signal.SIGTERM, signal.SIGKILL]
    board.step()
    meta = board.spool.read_meta("outgoing", "w1")
    assert meta.outcome == "FAILED" and meta.error_kind == "deadline"


def test_drain_when_idle_asks_each_child_to_stop_then_terminates_after_the_grace(board: Board):
    board.up()
    procs = {name: board.proc(name) for name in ("downloader", "executor", "uploader")}
    board.sup._on_signal(signal.SIGTERM, None)
    assert board.step() is False
    for name in procs:
        assert board.sent(name, "stop"), f"{name} was not asked to stop"
    assert set(board.states().values()) == {"STOPPING"}
    procs["uploader"].exit(0)  # it stopped when asked
    procs["executor"].ignores_term = True
    assert board.step(after=1.0) is False
    assert board.states()["uploader"] == "EXITED"
    assert board.os.signals_to(procs["downloader"]) == [], "within the grace: no signal"
    assert board.step(after=1.5) is False  # past the 2 s grace: SIGTERM
    assert board.os.signals_to(procs["downloader"])[0] == signal.SIGTERM
    assert board.os.signals_to(procs["executor"]) == [signal.SIGTERM]
    assert board.step() is False  # the executor still ignores SIGTERM
    assert board.states()["downloader"] == "EXITED"
    assert board.step(after=2.5) is True  # its grace over: SIGKILL, and all are gone
    sent = board.os.signals_to(procs["executor"])
    assert sent[0] == signal.SIGTERM and sent[-1] == signal.SIGKILL
    assert set(sent[:-1]) == {signal.SIGTERM}
    assert len(board.os.started) == 3, "a draining supervisor restarts no child"


def test_drain_lets_the_running_workload_finish_and_be_reported_first(board: Board):
    board.up()
    board.say("downloader", "queue", ok=True)  # the service is reachable
    run = board.running_job("w1")
    board.sup._on_signal(signal.SIGTERM, None)
    assert board.step() is False
    assert not board.sent("executor", "stop"), "the workload runs on while draining"
    board.say("executor", "outcome", re=run["id"], work_id="w1", status="DONE",
              programs_done=1, programs_total=1, seconds=0.5, has_results=True)
    assert board.step(after=1.0) is False
    assert board.spool.read_meta("outgoing", "w1").outcome == "DONE"
    assert board.sent("uploader", "kick")
    assert not board.sent("uploader", "stop"), "the uploader reports the outcome first"
    board.spool.move("w1", "outgoing", "done")  # what the uploader does once it reported
    board.say("uploader", "uploaded", work_id="w1", outcome="DONE")
    assert board.step() is False
    for name in ("downloader", "executor", "uploader"):
        assert board.sent(name, "stop")
        board.proc(name).exit(0)  # they stop when asked
    assert board.step() is True
    assert set(board.states().values()) == {"EXITED"}
    assert board.sup.counts["DONE"] == 1


def test_drain_past_the_stop_timeout_stops_the_workload_as_board_restarted(tmp_path: Path):
    board = Board(tmp_path, supervisor={"stop_timeout_seconds": "5"})
    board.up()
    board.running_job("w1")
    executor = board.proc("executor")
    board.sup._on_signal(signal.SIGTERM, None)
    board.step()
    board.idle(4.0)
    assert board.os.signals_to(executor) == []
    board.idle(1.5)
    assert board.os.signals_to(executor) == [signal.SIGTERM]
    board.step()
    meta = board.spool.read_meta("outgoing", "w1")
    assert meta.outcome == "FAILED" and meta.error_kind == "board_restarted"


def test_a_second_sigterm_stops_at_once(board: Board):
    board.up()
    board.running_job("w1")
    board.sup._on_signal(signal.SIGTERM, None)
    board.step()
    board.sup._on_signal(signal.SIGTERM, None)
    board.step()  # no stop timeout: the workload is stopped now
    assert board.os.signals_to(board.proc("executor")) == [signal.SIGTERM]
    board.step()  # filed; the children are terminated without waiting for their grace
    for _ in range(3):
        if board.step():
            break
    else:
        pytest.fail(f"the supervisor did not finish stopping: {board.states()}")
    assert board.spool.read_meta("outgoing", "w1").error_kind == "board_restarted"

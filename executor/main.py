"""The executor process: the only process that touches the RFSoC.

Started by the supervisor as ``python -m executor.main --bus ipc://... --config FILE ...``
(``boardcore.childstart``: it reads its ``[executor]`` settings from the config itself) with
``start_new_session=True`` and an environment the supervisor scrubbed
(``supervisor.childenv``). In order, at its start: die with the parent, own process group,
resource limits, private network, lock the board, open the board, write the soccfg for the
downloader, and only then say hello on the bus. Then it runs one job at a time (``run``
messages, with the run's ``boardcore.limits.RunLimits``), reports progress, and answers
``outcome``.

Stopping a run early (``executor.runner`` keeps the results so far, closes the file cleanly
and records the outcome in it):
- ``cancel``/``stop`` on the bus: at the next round boundary (CANCELLED);
- the run's deadline: before the next program (FAILED, kind ``deadline``);
- SIGTERM: the handler only counts it. The first: stop after the program running now
  (FAILED, kind ``stopped``), answer, and exit; no new run is taken. A second: stop sooner,
  at the next round boundary of that program (its partial data is dropped). The supervisor
  sends SIGKILL ``grace_seconds`` after its first SIGTERM whatever the count.

``python -m executor.main --check --config FILE``: set the resource limits, lock the board
and open it the same way, then exit (no bus): 0 and the board's name on stdout when it
opened; else one line on stderr saying why, and the exit code says what failed: 2 the
config (``USAGE``), 75 the lock is held (``BOARD_BUSY``), 76 the board did not open
(``BOARD_OPEN_FAILED``), 77 limits or lock file (``SANDBOX_FAILED``). ``qick-supervisor
check`` runs it.

Exit codes: see ``boardcore.exitcodes``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from qickbase.atomicfile import atomic_write
from boardcore import exitcodes
from boardcore.bus import ChildBus, Waker
from boardcore.childstart import child_parser, child_settings
from boardcore.errors import BoardBusy, BoardConfigError, LimitsError, SandboxError
from boardcore.limits import RunLimits
from boardcore.settings import BoardSettings
from executor import sandbox

log = logging.getLogger("qick.executor")
#: what to install when an import the board needs fails
MISSING_HINT = ("pip install 'qick-queue[board]'; a queue service running mock devices: "
                "pip install 'qick-queue[server]'")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = child_parser("qick-executor", __doc__.splitlines()[0], bus_required=False)
    p.add_argument("--check", action="store_true",
                   help="lock and open the board, say whether it opened, exit (no bus)")
    args = p.parse_args(argv)
    if not args.check and not args.bus:
        p.error("--bus is required (or --check)")
    return args


class SigtermCount:
    """The SIGTERM handler: it only counts (the job's thread and the bus loop read it)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1


class RunThread:
    """One workload running in a worker thread; the main thread keeps the bus alive."""

    def __init__(self, runner: Any, board: Any, msg: Dict[str, Any], limits: RunLimits,
                 sigterms: SigtermCount, waker: Waker):
        self.work_id: str = msg["work_id"]
        self.request_id: str = msg["id"]
        self.stop = threading.Event()
        self.progress: "queue.Queue[tuple]" = queue.Queue()
        self.outcome: Optional[Dict[str, Any]] = None
        self._runner, self._board, self._msg, self._waker = runner, board, msg, waker
        self._limits, self._sigterms = limits, sigterms
        self.thread = threading.Thread(target=self._run, name=f"job-{self.work_id}", daemon=True)

    def _run(self) -> None:
        msg = self._msg
        started = time.monotonic()
        try:
            result = self._runner.run_workload(
                msg["workload_path"], msg["results_path"], self._board, self._limits,
                self._progressed, self.stop.is_set, work_id=self.work_id,
                terminations=lambda: self._sigterms.count)
            self.outcome = {
                "status": result.status, "error_kind": result.error_kind,
                "error_message": result.error_message, "programs_done": result.programs_done,
                "programs_total": result.programs_total, "seconds": result.seconds}
        except MemoryError:
            self.outcome = {"status": "FAILED", "error_kind": "device_error",
                            "error_message": "the workload needs more memory than the board "
                            "allows; reduce its size (fewer shots or programs)"}
        except Exception as exc:  # the runner promises not to raise; a bug must not hang us
            log.exception("run_workload raised")
            self.outcome = {"status": "FAILED", "error_kind": "device_error",
                            "error_message": f"the executor failed: {type(exc).__name__}: {exc}"}
        self.outcome.setdefault("seconds", time.monotonic() - started)
        self.outcome["has_results"] = os.path.exists(msg["results_path"])
        self._waker.wake()

    def _progressed(self, done: int, total: int) -> None:
        self.progress.put((done, total))
        self._waker.wake()

    def start(self) -> None:
        self.thread.start()

    @property
    def finished(self) -> bool:
        return self.outcome is not None and not self.thread.is_alive()


def _write_soccfg(board: Any, path: Optional[str]) -> None:
    if not path:
        return
    cfg = getattr(board, "config_dict", None)
    if cfg is None:
        return
    atomic_write(path, json.dumps(cfg), mode=0o644)  # not secret: the downloader sends it


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.check:
        return check(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="executor[%(process)d] %(levelname)s %(message)s")
    try:
        s = child_settings(args)
    except BoardConfigError as exc:
        log.error("%s", exc)
        return exitcodes.USAGE
    sigterms = SigtermCount()  # from here on, SIGTERM means "stop after this program"
    signal.signal(signal.SIGTERM, sigterms)
    # 1. sandbox, before any thread exists (unshare applies to the calling thread)
    if not sandbox.die_with_parent(args.parent):
        log.error("the supervisor is gone; stopping")
        return exitcodes.PARENT_GONE
    sandbox.own_process_group()
    network = "private" if s.network_isolation else "not isolated (disabled by config)"
    if s.network_isolation:
        network = sandbox.isolate_network()
    if network != "private":
        log.warning("network: %s", network)
    try:
        limits = sandbox.set_limits(s.address_space_mb * 2**20, s.open_files)
        lock = sandbox.BoardLock(str(s.board_lock)).acquire()
    except BoardBusy as exc:
        log.error("%s", exc)
        return exitcodes.BOARD_BUSY
    except SandboxError as exc:
        log.error("%s", exc)
        return exitcodes.SANDBOX_FAILED
    # 2. open the board (the heavy imports happen here, under the limits)
    soccfg_out = str(s.soccfg_path)
    try:
        runner, board = _open(s)
        _write_soccfg(board, soccfg_out)
    except Exception as exc:
        reason = f"cannot open the {s.board} board {s.board_name}: {exc}"
        if s.address_space_mb and (isinstance(exc, MemoryError) or (
                isinstance(exc, ImportError) and not isinstance(exc, ModuleNotFoundError))):
            # a library that cannot be mapped under the limit fails its import (a missing
            # one is a ModuleNotFoundError)
            reason = (f"cannot open the {s.board} board {s.board_name} within the "
                      f"executor's address space limit of {s.address_space_mb} MB "
                      f"([executor] address_space_mb): {' '.join(str(exc).split())}")
        elif isinstance(exc, ImportError):
            reason = _open_failed(s, exc)
        if s.board == "qick":  # what PYNQ said and what to look at (executor.openfail)
            reason = f"cannot open the real board (qick): {exc}"
        log.error("%s (%s)", reason, type(exc).__name__)
        _farewell(args, s, reason)
        lock.release()
        return exitcodes.BOARD_OPEN_FAILED
    # 3. only now: hello
    bus = ChildBus(args.bus, "executor", s.heartbeat_seconds, s.heartbeat_timeout_seconds)
    try:
        bus.hello(board=getattr(board, "name", s.board_name),
                  fingerprint=getattr(board, "fingerprint", None), board_kind=s.board,
                  network=network, limits=limits, soccfg=soccfg_out)
        return _serve(bus, runner, board, sigterms)
    finally:
        bus.close(linger=1.0)  # the last outcome must leave before we exit
        lock.release()


def _open(s: BoardSettings) -> tuple:
    """(the runner module, the open board). The runner is imported here, not at the top:
    it imports numpy, qick and h5py, which must load under the resource limits."""
    from executor import runner
    board = runner.open_board(kind=s.board, board=s.board_name, soccfg_json=s.soccfg_json,
                              seed=s.seed, time_scale=s.time_scale)
    return runner, board


def check(args: argparse.Namespace) -> int:
    """``--check``: limits, lock, open, release; the board's name on stdout, or one line on
    stderr saying why not (the exit code says which step failed)."""
    logging.basicConfig(level=logging.CRITICAL)  # qick's and PYNQ's own chatter
    try:
        s = child_settings(args)
        sandbox.set_limits(s.address_space_mb * 2**20, s.open_files)
        lock = sandbox.BoardLock(str(s.board_lock)).acquire()  # BoardBusy names the holder
    except BoardConfigError as exc:
        return _say(exitcodes.USAGE, str(exc))
    except BoardBusy as exc:
        return _say(exitcodes.BOARD_BUSY, str(exc))
    except SandboxError as exc:
        return _say(exitcodes.SANDBOX_FAILED, str(exc))
    try:
        _, board = _open(s)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return _say(exitcodes.BOARD_OPEN_FAILED, _open_failed(s, exc))
    finally:
        lock.release()
    print(getattr(board, "name", s.board_name))
    return exitcodes.OK


def _open_failed(s: BoardSettings, exc: Exception) -> str:
    """Why the board did not open, in one line. qickwork (numpy, h5py) is loaded by
    ``_open`` under the limits, so its error type is looked up only once it is there."""
    errors = sys.modules.get("qickwork.errors")
    if errors is not None and isinstance(exc, errors.WorkloadError):
        return f"cannot open the {s.board} board {s.board_name}: {exc}"  # open_board's words
    if isinstance(exc, ImportError):
        return (f"cannot open the {s.board} board {s.board_name}: {exc}: this Python lacks "
                f"what the board needs ({MISSING_HINT})")
    return (f"cannot open the {s.board} board {s.board_name}: {type(exc).__name__}: {exc} "
            "(check [executor] board, board_name, soccfg_json; is the firmware loaded?)")


def _say(code: int, reason: str) -> int:
    print(" ".join(reason.split()), file=sys.stderr)  # one line, whatever the reason held
    return code


def _farewell(args: argparse.Namespace, s: BoardSettings, reason: str) -> None:
    """The supervisor reports this reason (ERROR on the heartbeat), not just an exit code."""
    ChildBus(args.bus, "executor", s.heartbeat_seconds, s.heartbeat_timeout_seconds
             ).farewell(reason)


def _serve(bus: ChildBus, runner: Any, board: Any, sigterms: SigtermCount) -> int:
    job: Optional[RunThread] = None
    stopping = False
    last_progress = None
    waker = Waker()  # the job's thread pokes it: outcome and progress go out at once
    while True:
        # woken by the job's thread; when its outcome is set, the thread is about to end
        timeout = min(0.5, bus.beat.interval)
        if job is not None and job.outcome is not None:
            timeout = 0.002
        for msg in bus.recv(timeout, waker):
            kind = msg["type"]
            if kind == "run":
                refusal = None
                if job is not None:
                    refusal = "the executor is busy"
                elif sigterms.count:
                    refusal = "the executor is stopping (SIGTERM)"
                if refusal is not None:
                    bus.send("outcome", re=msg["id"], work_id=msg.get("work_id"),
                             status="REFUSED", error_message=refusal)
                    continue
                try:
                    limits = RunLimits.from_message(msg.get("limits"))
                except LimitsError as exc:
                    log.error("refused the run of %s: %s", msg.get("work_id"), exc)
                    bus.send("outcome", re=msg["id"], work_id=msg.get("work_id"),
                             status="FAILED", error_kind="device_error",
                             error_message=f"the board's executor refused the run: {exc}",
                             programs_done=0, programs_total=0, has_results=False)
                    continue
                job = RunThread(runner, board, msg, limits, sigterms, waker)
                last_progress = None
                job.start()
            elif kind == "cancel" and job is not None and msg.get("work_id") == job.work_id:
                job.stop.set()
            elif kind == "stop":
                stopping = True
                if job is not None:
                    job.stop.set()
        if job is not None:
            latest = None
            while not job.progress.empty():
                latest = job.progress.get_nowait()
            if latest is not None and latest != last_progress:
                last_progress = latest
                bus.send("progress", work_id=job.work_id, done=latest[0], total=latest[1])
            if job.finished:
                bus.send("outcome", re=job.request_id, work_id=job.work_id, **job.outcome)
                job = None
        if (stopping or sigterms.count) and job is None:
            if sigterms.count:
                log.info("SIGTERM: stopping")
            return exitcodes.OK
        if not bus.tick(busy=job.work_id if job else None):
            log.error("no word from the supervisor for %.0f s; stopping", bus.beat.timeout)
            if job is not None:
                job.stop.set()
            return exitcodes.PARENT_GONE


if __name__ == "__main__":
    sys.exit(main())

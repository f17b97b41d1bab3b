"""The executor process: the only process that touches the RFSoC.

Started by the supervisor as ``python -m executor.main --bus ipc://... [options]`` with
``start_new_session=True`` and a scrubbed environment. In order, at its start:
die with the parent, own process group, resource limits, private network, scrub the
environment, lock the board, open the board, write the soccfg for the downloader, and only
then say hello on the bus. Then it runs one job at a time (``run`` messages), reports
progress, stops between programs when asked (``cancel``/``stop``), and answers ``outcome``.

Exit codes: see ``boardcore.exitcodes``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from executor import sandbox
from boardcore import exitcodes
from boardcore.bus import ChildBus, Waker
from boardcore.errors import BoardBusy, SandboxError

log = logging.getLogger("qick.executor")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qick-executor", description=__doc__.splitlines()[0])
    p.add_argument("--bus", required=True, help="the supervisor's bus address (ipc://...)")
    p.add_argument("--parent", type=int, default=None, help="the supervisor's pid")
    p.add_argument("--board", default="qick", choices=("simulated", "qick"))
    p.add_argument("--board-name", default="zcu216-v2")
    p.add_argument("--soccfg-json", default=None, help="simulated board: its soccfg JSON")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--time-scale", type=float, default=0.0)
    p.add_argument("--lock-file", required=True)
    p.add_argument("--soccfg-out", default=None, help="where to write the board's soccfg JSON")
    p.add_argument("--address-space-mb", type=int, default=0)
    p.add_argument("--open-files", type=int, default=256)
    p.add_argument("--no-network-isolation", action="store_true")
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--heartbeat-timeout", type=float, default=10.0)
    return p.parse_args(argv)


class Job:
    """One workload running in a worker thread; the main thread keeps the bus alive."""

    def __init__(self, runner: Any, board: Any, msg: Dict[str, Any], waker: Waker):
        self.work_id: str = msg["work_id"]
        self.request_id: str = msg["id"]
        self.stop = threading.Event()
        self.progress: "queue.Queue[tuple]" = queue.Queue()
        self.outcome: Optional[Dict[str, Any]] = None
        self._runner, self._board, self._msg, self._waker = runner, board, msg, waker
        self.thread = threading.Thread(target=self._run, name=f"job-{self.work_id}", daemon=True)

    def _run(self) -> None:
        msg = self._msg
        started = time.monotonic()
        try:
            result = self._runner.run_workload(
                msg["workload_path"], msg["results_path"], self._board,
                _limits(self._runner, msg.get("limits") or {}),
                self._progressed,
                self.stop.is_set, work_id=self.work_id)
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


def _limits(runner: Any, limits: Dict[str, Any]) -> Any:
    """The runner's limits object, built from the plain dict the supervisor sends."""
    factory = getattr(runner, "Limits", None)
    if factory is None:
        return limits
    names = getattr(factory, "__dataclass_fields__", None)
    if names is not None:
        limits = {k: v for k, v in limits.items() if k in names}
    return factory(**limits)


def _write_soccfg(board: Any, path: Optional[str]) -> None:
    if not path:
        return
    cfg = getattr(board, "config_dict", None)
    if cfg is None:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(cfg, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="executor[%(process)d] %(levelname)s %(message)s")
    args = parse_args(argv)
    # 1. sandbox, before any thread exists (unshare applies to the calling thread)
    if not sandbox.die_with_parent(args.parent):
        log.error("the supervisor is gone; stopping")
        return exitcodes.PARENT_GONE
    sandbox.own_process_group()
    dropped = sandbox.scrub_own_environment()
    if dropped:
        log.warning("dropped credential-like environment variables: %s", ", ".join(dropped))
    network = "not isolated (disabled by config)" if args.no_network_isolation \
        else sandbox.isolate_network()
    if network != "private":
        log.warning("network: %s", network)
    try:
        limits = sandbox.set_limits(args.address_space_mb * 2**20, args.open_files)
        lock = sandbox.BoardLock(args.lock_file).acquire()
    except BoardBusy as exc:
        log.error("%s", exc)
        return exitcodes.BOARD_BUSY
    except SandboxError as exc:
        log.error("%s", exc)
        return exitcodes.SANDBOX_FAILED
    # 2. open the board (the heavy imports happen here, under the limits)
    try:
        from executor import runner
        board = runner.open_board(kind=args.board, board=args.board_name,
                                  soccfg_json=args.soccfg_json, seed=args.seed,
                                  time_scale=args.time_scale)
        _write_soccfg(board, args.soccfg_out)
    except Exception as exc:
        reason = f"cannot open the {args.board} board {args.board_name}: {exc}"
        if args.address_space_mb and isinstance(exc, (ImportError, MemoryError)):
            # a library that cannot be mapped under the limit fails its import
            reason = (f"cannot open the {args.board} board {args.board_name} within the "
                      f"executor's address space limit of {args.address_space_mb} MB "
                      f"([executor] address_space_mb): {' '.join(str(exc).split())}")
        if args.board == "qick":  # what PYNQ said and what to look at (executor.openfail)
            reason = f"cannot open the real board (qick): {exc}"
        log.error("%s (%s)", reason, type(exc).__name__)
        _farewell(args, reason)
        return exitcodes.BOARD_OPEN_FAILED
    # 3. only now: hello
    bus = ChildBus(args.bus, "executor", args.heartbeat, args.heartbeat_timeout)
    try:
        bus.hello(board=getattr(board, "name", args.board_name),
                  fingerprint=getattr(board, "fingerprint", None), board_kind=args.board,
                  network=network, limits=limits, soccfg=args.soccfg_out)
        return _serve(bus, runner, board)
    finally:
        bus.close()
        lock.release()


def _farewell(args: argparse.Namespace, reason: str) -> None:
    """The supervisor reports this reason (ERROR on the heartbeat), not just an exit code."""
    ChildBus(args.bus, "executor", args.heartbeat, args.heartbeat_timeout).farewell(reason)


def _serve(bus: ChildBus, runner: Any, board: Any) -> int:
    job: Optional[Job] = None
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
                if job is not None:
                    bus.send("outcome", re=msg["id"], work_id=msg.get("work_id"),
                             status="REFUSED", error_message="the executor is busy")
                    continue
                job = Job(runner, board, msg, waker)
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
        if stopping and job is None:
            return exitcodes.OK
        if not bus.tick(busy=job.work_id if job else None):
            log.error("no word from the supervisor for %.0f s; stopping", bus.beat.timeout)
            if job is not None:
                job.stop.set()
            return exitcodes.PARENT_GONE


if __name__ == "__main__":
    sys.exit(main())

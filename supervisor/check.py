"""``qick-supervisor check``: a preflight for the admin installing a board.

Each check says ``ok`` with what it found, or what is wrong and what to do; a check that
needs an earlier one (the queue needs the credentials) is skipped when that one failed.

    config       the config file reads, its daemon sections are valid, [service] and
                 [device] have the keys the board needs
    credentials  the credentials file has [credentials] id and secret, and only its owner
                 can read it (mode 0600)
    queue        the token endpoint answers and gives this device a token
    device       the token's device is [device] id (a device may read only its own record)
    board        the board lock is free (else: which process holds it) and the board opens:
                 the executor itself, started as the daemon starts it (its environment,
                 ``python -m executor.main --check``), locks and opens it, and exits
    spool        the spool folder is writable and has [supervisor] min_free_mb free
"""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional

from boardcore.childstart import MODULES, ChildStart
from boardcore.errors import BoardError, DiskFull
from boardcore.settings import BoardSettings, load_settings
from boardcore.spool import Spool
from cloudqueue.auth import device_auth_from_config
from cloudqueue.client import QueueClient
from cloudqueue.config import load_config
from cloudqueue.errors import AuthError, Forbidden, NotFound, QueueError
from qickbase.atomicfile import atomic_write
from qickbase.backoff import Backoff
from supervisor.childenv import executor_environment
from supervisor.children import python_module

SKIPPED = "skipped: fix the check above first"


def require_private(path: str) -> int:
    """The mode of the credentials file ``path``; BoardError when other users may read it
    (refused as ssh refuses a private key: the daemon does not start, ``check`` fails)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise BoardError(f"{path}: mode {mode:04o} lets other users read the device's "
                         f"secret; run `chmod 600 {path}` (owner: the service user)")
    return mode


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


class Preflight:
    """Runs the checks in order; ``results`` holds one ``Check`` per step."""

    def __init__(self, config: str, credentials: str):
        self.config_path, self.credentials_path = config, credentials
        self.results: List[Check] = []
        self.settings: Optional[BoardSettings] = None
        self.cfg: Any = None
        self.auth: Any = None

    def run(self, only: Optional[str] = None) -> List[Check]:
        """All checks, or with ``only``: that check and the checks it needs (``check --only
        board`` is what ``check --as-service`` runs inside the unit's sandbox)."""
        steps: List[tuple] = [
            ("config", self.check_config, ()),
            ("credentials", self.check_credentials, ("config",)),
            ("queue", self.check_queue, ("config", "credentials")),
            ("device", self.check_device, ("queue",)),
            ("board", self.check_board, ("config",)),
            ("spool", self.check_spool, ("config",)),
        ]
        if only is not None:
            wanted = {only} | set(next(needs for name, _, needs in steps if name == only))
            steps = [step for step in steps if step[0] in wanted]
        for name, step, needs in steps:
            if any(not self._passed(n) for n in needs):
                self.results.append(Check(name, False, SKIPPED, skipped=True))
                continue
            self.results.append(self._run_one(name, step))
        return self.results

    def _passed(self, name: str) -> bool:
        return any(r.name == name and r.ok for r in self.results)

    @staticmethod
    def _run_one(name: str, step: Callable[[], str]) -> Check:
        try:
            return Check(name, True, step())
        except (BoardError, QueueError) as exc:
            return Check(name, False, str(exc))

    # --- the checks: each returns what it found, or raises with what to fix -----------------
    def check_config(self) -> str:
        if not os.path.isfile(self.config_path):
            raise BoardError(f"{self.config_path}: no such config file; copy "
                             "etc/config.template there (or pass --config FILE)")
        self.settings = load_settings(self.config_path)
        self.cfg = load_config(self.config_path, None)
        for section, key in (("service", "api_endpoint"), ("service", "oauth_endpoint"),
                             ("device", "id")):
            self.cfg.require(section, key)
        return (f"{self.config_path}: device {self.cfg.device_id}, queue "
                f"{self.cfg.api_endpoint}, {self.settings.board} board")

    def check_credentials(self) -> str:
        path = self.credentials_path
        if not os.path.isfile(path):
            raise BoardError(f"{path}: no such credentials file; write the [credentials] id "
                             "and secret `userclient add-device` printed there (mode 0600), "
                             "or pass --credentials FILE")
        self.cfg = load_config(self.config_path, path)
        for key in ("id", "secret"):
            self.cfg.require("credentials", key)
        mode = require_private(path)
        return f"{path}: [credentials] id and secret, mode {mode:04o}"

    def check_queue(self) -> str:
        self.auth = device_auth_from_config(self.cfg)
        try:
            self.auth.token()
        except AuthError as exc:
            raise QueueError(str(exc)) from None
        except QueueError as exc:
            raise QueueError(f"{exc} (is the queue service up, and [service] oauth_endpoint "
                             f"= {self.cfg.oauth_endpoint} right?)") from None
        return f"got a device token from {self.auth.token_url}"

    def check_device(self) -> str:
        device_id = self.cfg.device_id
        client = QueueClient(self.cfg.api_endpoint, self.auth, timeout=15.0,
                             backoff=Backoff(base=0.2, cap=1.0), tries=2)
        owner = _token_subject(self.auth.token())
        try:
            device = client.get_device(device_id)
        except (Forbidden, NotFound) as exc:
            whose = f" (they are device {owner}'s)" if owner and owner != device_id else ""
            raise QueueError(f"the credentials in {self.credentials_path} are not device "
                             f"{device_id}'s{whose}: set [device] id in {self.config_path} "
                             "and the credentials to what `userclient add-device` printed "
                             f"for this board (the queue said: {exc})") from None
        name = getattr(device, "DeviceName", None) or ""
        return f"the token is device {device_id}'s" + (f" ({name})" if name else "")

    def check_board(self) -> str:
        s = self.settings
        lock_path = s.board_lock
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BoardError(f"cannot create {lock_path.parent} ({exc.strerror}); set "
                             "[executor] lock_file to a writable path") from None
        start = ChildStart(bus=None, parent=None, config=self.config_path, credentials=None,
                           spool=str(s.spool), run_dir=str(s.run_dir))
        argv = python_module(MODULES["executor"], "--check", *start.argv())
        try:
            done = subprocess.run(argv, env=executor_environment(os.environ),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=s.start_timeout_seconds)
        except subprocess.TimeoutExpired:
            raise BoardError(f"the {s.board} board {s.board_name} did not open within "
                             f"{s.start_timeout_seconds:g} s ([supervisor] "
                             "start_timeout_seconds; is the firmware loading?)") from None
        except OSError as exc:
            raise BoardError(f"cannot start the executor ({exc.strerror or exc})") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()  # its one line of why (executor.main)
            raise BoardError(lines[-1] if lines else f"the executor's check exited with "
                             f"{done.returncode} and said nothing")
        name = (done.stdout.strip().splitlines() or [s.board_name])[-1]
        return f"{s.board} board {name} opened, lock {lock_path} free"

    def check_spool(self) -> str:
        s = self.settings
        spool = Spool(s.spool, s.min_free_mb * 2**20).ensure()
        probe = spool.root / ".preflight"
        try:
            atomic_write(probe, b"ok")
            probe.unlink()
        except OSError as exc:
            raise BoardError(f"cannot write in the spool {spool.root} ({exc.strerror}); give "
                             "the service user write access or set [supervisor] spool") \
                from None
        try:
            spool.check_room()
        except DiskFull as exc:
            raise BoardError(f"{exc}; free space there or lower [supervisor] min_free_mb") \
                from None
        return f"{spool.root} writable, {spool.free_bytes() // 2**20} MiB free"


def _token_subject(token: str) -> Optional[str]:
    """The ``sub`` claim of a JWT, read without checking it (only to name the device in a
    message; our service puts the device id there, a stock Cognito token the client id)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        sub = json.loads(base64.urlsafe_b64decode(payload)).get("sub")
    except (IndexError, ValueError, AttributeError):
        return None
    return str(sub) if sub else None


def format_results(results: List[Check]) -> str:
    return "\n".join(f"{'ok' if r.ok else 'FAIL':<5} {r.name:<12} {r.detail}" for r in results)


def as_json(results: List[Check]) -> str:
    body: Dict[str, Any] = {"ok": all(r.ok for r in results),
                            "checks": [asdict(r) for r in results]}
    return json.dumps(body, indent=1)

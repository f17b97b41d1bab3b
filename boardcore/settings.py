"""The board daemon's settings: ``[supervisor]``, ``[executor]`` and ``[uploader]`` of the
config file (the original ``[service]``/``[device]`` sections are read by ``cloudqueue.config``).
Every default is here, documented in ``etc/config.template``.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from boardcore.errors import BoardConfigError, LimitsError
from boardcore.limits import RunLimits


def _state_dir() -> Path:
    # systemd's StateDirectory=qick sets STATE_DIRECTORY=/var/lib/qick
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/qick").split(":")[0])


def _runtime_dir() -> Path:
    return Path(os.environ.get("RUNTIME_DIRECTORY", "/run/qick").split(":")[0])


@dataclass
class BoardSettings:
    # [supervisor]
    health: Tuple[str, int] = ("127.0.0.1", 8787)   # "" in the file disables it
    health_enabled: bool = True
    spool: Path = field(default_factory=lambda: _state_dir() / "spool")
    run_dir: Path = field(default_factory=_runtime_dir)
    heartbeat_seconds: float = 1.0           # bus heartbeats, both ways
    heartbeat_timeout_seconds: float = 10.0  # silent child -> restarted
    start_timeout_seconds: float = 60.0      # a child must say hello within this
    restart_max: int = 5                     # restart intensity: N restarts ...
    restart_period_seconds: float = 60.0     # ... within T seconds -> ERROR, slow retries
    restart_slow_seconds: float = 60.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    stop_timeout_seconds: float = 30.0       # SIGTERM: current work may finish within this
    rerun_interrupted: bool = False          # after a crash: rerun running/ work, or FAIL it
    min_free_mb: int = 200                   # below this, no new work is taken
    done_max_age_days: float = 7.0
    done_max_mb: int = 1024
    queue_heartbeat_seconds: float = 5.0     # PUT /devices/{id}
    long_poll_seconds: int = 20              # GET .../workload?WaitSeconds=
    poll_seconds: float = 5.0                # stock service: poll interval when idle
    # [executor]
    board: str = "qick"                      # qick (the real RFSoC) | simulated
    board_name: str = "zcu216-v2"
    soccfg_json: Optional[str] = None
    seed: Optional[int] = None
    time_scale: float = 0.0
    deadline_seconds: float = 3600.0         # per workload: the executor stops between programs
    deadline_margin_seconds: float = 60.0    # the supervisor's SIGTERM at deadline + this
    grace_seconds: float = 5.0               # SIGTERM -> SIGKILL
    address_space_mb: int = 0                # 0 = unlimited
    open_files: int = 256
    lock_file: Optional[Path] = None         # default <run_dir>/board.lock
    network_isolation: bool = True
    max_workload_mb: int = 100
    max_result_mb: int = 1024
    # [uploader]
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    scan_seconds: float = 2.0                # look at outgoing/ at least this often

    @property
    def board_lock(self) -> Path:
        return self.lock_file or self.run_dir / "board.lock"

    def limits(self) -> RunLimits:
        """What the executor is told with each run."""
        return RunLimits(deadline_seconds=self.deadline_seconds,
                         max_workload_bytes=self.max_workload_mb * 2**20,
                         max_result_bytes=self.max_result_mb * 2**20)


_SECTIONS = {
    "supervisor": ("health", "spool", "run_dir", "heartbeat_seconds",
                   "heartbeat_timeout_seconds", "start_timeout_seconds", "restart_max",
                   "restart_period_seconds", "restart_slow_seconds", "backoff_base_seconds",
                   "backoff_max_seconds", "stop_timeout_seconds", "rerun_interrupted",
                   "min_free_mb", "done_max_age_days", "done_max_mb",
                   "queue_heartbeat_seconds", "long_poll_seconds", "poll_seconds"),
    "executor": ("board", "board_name", "soccfg_json", "seed", "time_scale", "deadline_seconds",
                 "deadline_margin_seconds", "grace_seconds", "address_space_mb", "open_files", "lock_file",
                 "network_isolation", "max_workload_mb", "max_result_mb"),
    "uploader": ("retry_base_seconds", "retry_max_seconds", "scan_seconds"),
}


def _convert(name: str, raw: str, current, where: str):
    try:
        if name == "health":
            host, _, port = raw.rpartition(":")
            return (host or "127.0.0.1", int(port))
        if isinstance(current, bool):
            return {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False,
                    "false": False, "off": False}[raw.lower()]
        if isinstance(current, Path) or name in ("lock_file",):
            return Path(raw).expanduser()
        if name == "seed":
            return int(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        return raw
    except (ValueError, KeyError):
        raise BoardConfigError(f"{where}: `{name} = {raw}` is not valid; see "
                               "etc/config.template for the expected form") from None


def load_settings(path: Optional[os.PathLike | str]) -> BoardSettings:
    """Read the daemon's sections from the config file (missing file or keys: defaults)."""
    settings = BoardSettings()
    if path is None:
        return settings
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise BoardConfigError(f"{path}: cannot read it ({exc.strerror}); pass --config with "
                               "the right path") from None
    except configparser.Error as exc:
        raise BoardConfigError(f"{path}: not a valid INI file ({str(exc).splitlines()[0]})") \
            from None
    for section, names in _SECTIONS.items():
        if not parser.has_section(section):
            continue
        for key, raw in parser.items(section):
            where = f"{path} [{section}]"
            if key not in names:
                raise BoardConfigError(f"{where}: unknown key `{key}`; known keys: "
                                       f"{', '.join(names)}")
            raw = raw.strip()
            if raw == "":
                if key == "health":
                    settings.health_enabled = False
                continue
            setattr(settings, key, _convert(key, raw, getattr(settings, key), where))
    if settings.board not in ("simulated", "qick"):
        raise BoardConfigError(f"{path} [executor]: board = {settings.board} is not known; "
                               "use `qick` (the real RFSoC) or `simulated`")
    if settings.restart_max < 1 or settings.restart_period_seconds <= 0:
        raise BoardConfigError(f"{path} [supervisor]: restart_max must be at least 1 and "
                               "restart_period_seconds more than 0")
    try:
        settings.limits()
    except LimitsError as exc:
        raise BoardConfigError(f"{path} [executor]: {exc} (deadline_seconds, max_workload_mb, "
                               "max_result_mb)") from None
    if settings.deadline_margin_seconds < 0:
        raise BoardConfigError(f"{path} [executor]: deadline_margin_seconds must be 0 or more")
    if settings.heartbeat_timeout_seconds <= 2 * settings.heartbeat_seconds:
        raise BoardConfigError(f"{path} [supervisor]: heartbeat_timeout_seconds must be more "
                               "than twice heartbeat_seconds")
    return settings

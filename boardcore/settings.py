"""The board daemon's settings: ``[supervisor]``, ``[executor]`` and ``[uploader]`` of the
config file (the original ``[service]``/``[user]``/``[device]`` sections are read by
``cloudqueue.config``).

Each key is declared once, in ``SETTINGS`` (name, section, type, default, doc). Everything
else reads that declaration: ``load_settings`` (the INI parser and its errors),
``BoardSettings`` (one attribute per key), the board part of ``etc/config.template``
(``render_template``; a test keeps the committed file equal to it), ``qick-supervisor
check`` and the children, which load the same settings from the same file
(``boardcore.childstart``).

Regenerate the template after changing a declaration::

    python -m boardcore.settings etc/config.template
"""
from __future__ import annotations

import configparser
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from boardcore.errors import BoardConfigError, LimitsError
from boardcore.limits import RunLimits

SECTIONS = ("supervisor", "executor", "uploader")
BOARDS = ("qick", "simulated")


@dataclass(frozen=True)
class Setting:
    """One key of the board config. ``kind``: ``int``, ``float``, ``bool``, ``text``,
    ``path``, ``address`` (``host:port``; empty disables) or ``board`` (one of ``BOARDS``).
    ``default`` None: unset, or computed where the doc says."""
    name: str
    section: str
    kind: str
    default: Any
    doc: str


SETTINGS: Tuple[Setting, ...] = (
    # [supervisor]
    Setting("health", "supervisor", "address", ("127.0.0.1", 8787),
            "Health endpoint for admins (/healthz /readyz /status /metrics); empty disables "
            "it."),
    Setting("spool", "supervisor", "path", None,
            "The durable spool of workloads and results (default: $STATE_DIRECTORY/spool = "
            "/var/lib/qick/spool under systemd)."),
    Setting("run_dir", "supervisor", "path", None,
            "The private run directory of the bus and the board lock (default: "
            "$RUNTIME_DIRECTORY = /run/qick under systemd)."),
    Setting("heartbeat_seconds", "supervisor", "float", 1.0,
            "Bus heartbeats, both ways, this often."),
    Setting("heartbeat_timeout_seconds", "supervisor", "float", 10.0,
            "A child silent this long is restarted (more than twice heartbeat_seconds)."),
    Setting("start_timeout_seconds", "supervisor", "float", 60.0,
            "A starting child must say hello within this."),
    Setting("restart_max", "supervisor", "int", 5,
            "Restart intensity: more than restart_max restarts within restart_period_seconds "
            "makes the board report ERROR and retry every restart_slow_seconds instead of "
            "flapping."),
    Setting("restart_period_seconds", "supervisor", "float", 60.0,
            "The window of restart_max."),
    Setting("restart_slow_seconds", "supervisor", "float", 60.0,
            "The slow retry interval after too many restarts."),
    Setting("backoff_base_seconds", "supervisor", "float", 0.5,
            "A child's restart waits from this ..."),
    Setting("backoff_max_seconds", "supervisor", "float", 30.0,
            "... doubling, with jitter, up to this."),
    Setting("stop_timeout_seconds", "supervisor", "float", 30.0,
            "SIGTERM: the current workload may finish within this; then it is stopped "
            "(FAILED)."),
    Setting("rerun_interrupted", "supervisor", "bool", False,
            "After a crash, work that was running is FAILED (\"board restarted\"), or run "
            "again if yes."),
    Setting("min_free_mb", "supervisor", "int", 200,
            "No new work is taken below this much free disk."),
    Setting("done_max_age_days", "supervisor", "float", 7.0,
            "done/ is pruned of work older than this ..."),
    Setting("done_max_mb", "supervisor", "int", 1024,
            "... and down to this size."),
    Setting("queue_heartbeat_seconds", "supervisor", "float", 5.0,
            "Queue link: the board's heartbeat to the queue (PUT /devices/{id}) this often."),
    Setting("long_poll_seconds", "supervisor", "int", 20,
            "Queue link: how long one ask for work waits (our service's long-poll)."),
    Setting("poll_seconds", "supervisor", "float", 5.0,
            "Queue link: the poll interval when idle (the stock service, which has no "
            "long-poll)."),
    # [executor]
    Setting("board", "executor", "board", "qick",
            "qick = the real RFSoC (QickSoc), the default; simulated = a simulated board "
            "(board_name, soccfg_json), for trials: it says so in its heartbeat (userclient "
            "devices shows \"(simulated)\"), /status, the startup log and every results file "
            "it writes."),
    Setting("board_name", "executor", "text", "zcu216-v2",
            "The simulated board's model."),
    Setting("soccfg_json", "executor", "text", None,
            "The simulated board's soccfg JSON file (default: the model's own)."),
    Setting("seed", "executor", "int", None,
            "The simulated board's random seed (default: a new one each start)."),
    Setting("time_scale", "executor", "float", 0.0,
            "The simulated board: a round takes time_scale times the program's estimated "
            "duration (0 = as fast as it can)."),
    Setting("deadline_seconds", "executor", "float", 3600.0,
            "Per-workload deadline, on both sides. The executor stops by itself between "
            "programs once deadline_seconds have passed (FAILED, kind \"deadline\", the "
            "results of the programs done kept). The supervisor is the backstop for a program "
            "that runs on past it: at deadline_seconds + deadline_margin_seconds it sends "
            "SIGTERM (the executor then stops after the program running), and SIGKILL "
            "grace_seconds later."),
    Setting("deadline_margin_seconds", "executor", "float", 60.0,
            "The supervisor's backstop margin above deadline_seconds: make it longer than "
            "your longest program."),
    Setting("grace_seconds", "executor", "float", 5.0,
            "From SIGTERM to SIGKILL."),
    Setting("address_space_mb", "executor", "int", 0,
            "Resource limit of the executor process: its address space (0 = unlimited)."),
    Setting("open_files", "executor", "int", 256,
            "Resource limit of the executor process: open files."),
    Setting("lock_file", "executor", "path", None,
            "The board lock (default: <run_dir>/board.lock); a notebook must take the same "
            "lock (executor.sandbox.BoardLock)."),
    Setting("network_isolation", "executor", "bool", True,
            "Private network namespace for the executor (needs root; see "
            "executor/sandbox.py)."),
    Setting("max_workload_mb", "executor", "int", 100,
            "A workload file over this is refused (FAILED, too_large) without filling the "
            "disk."),
    Setting("max_result_mb", "executor", "int", 1024,
            "A results file may grow to this."),
    # [uploader]
    Setting("retry_base_seconds", "uploader", "float", 1.0,
            "Results upload retries: exponential backoff with jitter from this ..."),
    Setting("retry_max_seconds", "uploader", "float", 300.0,
            "... up to this, forever, across restarts."),
    Setting("scan_seconds", "uploader", "float", 2.0,
            "Look at outgoing/ at least this often."),
)

BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
# the line where the board part of etc/config.template begins (the rest is cloudqueue.config's)
TEMPLATE_MARK = ("# ---- The board daemon (qick-supervisor, qick.service); every key is "
                 "optional ----")


def _state_dir() -> Path:
    # systemd's StateDirectory=qick sets STATE_DIRECTORY=/var/lib/qick
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/qick").split(":")[0])


def _runtime_dir() -> Path:
    return Path(os.environ.get("RUNTIME_DIRECTORY", "/run/qick").split(":")[0])


class BoardSettings:
    """One attribute per declared setting (``SETTINGS``); keywords override the defaults.
    ``spool`` and ``run_dir`` left unset are computed from the environment (systemd's
    ``STATE_DIRECTORY``/``RUNTIME_DIRECTORY``)."""

    def __init__(self, **values: Any):
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        for setting in SETTINGS:
            setattr(self, setting.name, values.get(setting.name, setting.default))
        if self.spool is None:
            self.spool = _state_dir() / "spool"
        if self.run_dir is None:
            self.run_dir = _runtime_dir()

    def values(self) -> Dict[str, Any]:
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoardSettings) and self.values() == other.values()

    def __repr__(self) -> str:
        return f"BoardSettings({', '.join(f'{k}={v!r}' for k, v in self.values().items())})"

    @property
    def health_enabled(self) -> bool:
        return self.health is not None

    @property
    def board_lock(self) -> Path:
        return Path(self.lock_file or Path(self.run_dir) / "board.lock")

    @property
    def soccfg_path(self) -> Path:
        """Where the executor writes the open board's soccfg (JSON) for the downloader."""
        return Path(self.run_dir) / "soccfg.json"

    def limits(self) -> RunLimits:
        """What the executor is told with each run."""
        return RunLimits(deadline_seconds=self.deadline_seconds,
                         max_workload_bytes=self.max_workload_mb * 2**20,
                         max_result_bytes=self.max_result_mb * 2**20)


def _address(raw: str) -> Tuple[str, int]:
    host, _, port = raw.rpartition(":")
    return (host or "127.0.0.1", int(port))


_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True,
             "0": False, "no": False, "false": False, "off": False}


def _bool(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.lower()]
    except KeyError:
        raise ValueError(raw) from None


def _board(raw: str) -> str:
    if raw not in BOARDS:
        raise ValueError(raw)
    return raw


_PARSE: Dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "bool": _bool, "text": str,
    "path": lambda raw: Path(raw).expanduser(), "address": _address, "board": _board,
}


def _convert(setting: Setting, raw: str, where: str) -> Any:
    try:
        return _PARSE[setting.kind](raw)
    except ValueError:
        if setting.kind == "board":
            raise BoardConfigError(f"{where}: board = {raw} is not known; use `qick` (the "
                                   "real RFSoC) or `simulated`") from None
        raise BoardConfigError(f"{where}: `{setting.name} = {raw}` is not valid; see "
                               "etc/config.template for the expected form") from None


def load_settings(path: Optional[os.PathLike | str]) -> BoardSettings:
    """Read the daemon's sections from the config file (no file, or missing keys:
    defaults). BoardConfigError says which file, section and key is wrong."""
    if path is None:
        return BoardSettings()
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
    values: Dict[str, Any] = {}
    for section in SECTIONS:
        if not parser.has_section(section):
            continue
        where = f"{path} [{section}]"
        for key, raw in parser.items(section):
            setting = BY_NAME.get(key)
            if setting is None or setting.section != section:
                known = ", ".join(s.name for s in SETTINGS if s.section == section)
                raise BoardConfigError(f"{where}: unknown key `{key}`; known keys: {known}")
            raw = raw.strip()
            if raw == "":
                if setting.kind == "address":
                    values[key] = None  # disabled
                continue  # empty: the default
            values[key] = _convert(setting, raw, where)
    settings = BoardSettings(**values)
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


def _shown(setting: Setting) -> str:
    """The default as the template writes it (empty: unset or computed)."""
    value = setting.default
    if value is None:
        return ""
    if setting.kind == "address":
        return f"{value[0]}:{value[1]}"
    if setting.kind == "bool":
        return "yes" if value else "no"
    if setting.kind == "float":
        return f"{value:g}"
    return str(value)


def _template_lines() -> Iterator[str]:
    yield TEMPLATE_MARK
    yield "# Generated from boardcore/settings.py (SETTINGS): edit the declarations there, then"
    yield "# run `python -m boardcore.settings etc/config.template`."
    for section in SECTIONS:
        yield f"[{section}]"
        for setting in SETTINGS:
            if setting.section == section:
                yield from textwrap.wrap(setting.doc, width=90, initial_indent="# ",
                                         subsequent_indent="# ")
                yield f"{setting.name} = {_shown(setting)}".rstrip()
        if section != SECTIONS[-1]:
            yield ""


def render_template() -> str:
    """The board part of ``etc/config.template``: every declared key, its doc, its default."""
    return "\n".join(_template_lines()) + "\n"


def template_board_part(text: str) -> str:
    """The board part of a template's text (from ``TEMPLATE_MARK`` on; "" without it)."""
    start = text.find(TEMPLATE_MARK)
    return text[start:] if start >= 0 else ""


def update_template(path: os.PathLike | str) -> None:
    """Replace the board part of the template at ``path`` with ``render_template()``."""
    text = Path(path).read_text(encoding="utf-8")
    board = template_board_part(text)
    head = text[:len(text) - len(board)] if board else text.rstrip("\n") + "\n\n"
    Path(path).write_text(head + render_template(), encoding="utf-8")


if __name__ == "__main__":
    update_template(sys.argv[1] if len(sys.argv) > 1 else "etc/config.template")

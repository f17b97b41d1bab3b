"""``qick-supervisor``: the board daemon (``qick.service`` runs it) and ``status`` for people.

    qick-supervisor [--config FILE] [--credentials FILE]      run the daemon
    qick-supervisor status [--config FILE] [--json]           ask the running daemon
    qick-supervisor check [--config FILE] [--credentials FILE] [--json]
                                                              preflight of an installation
    qick-supervisor install-service [--dry-run] [--unit-path FILE] [--etc DIR]
                                                              write qick.service for this board
    qick-supervisor check --as-service [--unit PATH]          open the board in the unit's
                                                              sandbox (systemd-run)

Exit codes: 0 stopped cleanly; 2 a configuration problem (the message says what to fix);
1 the daemon is not reachable (``status``) or a preflight check failed (``check``).
``install-service``: 2 when it cannot do what was asked (not root, systemctl missing, a path it
cannot write: the message says what to do), 1 when the files are written but
``systemctl daemon-reload`` failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import List, Optional

from boardcore import exitcodes
from boardcore.errors import BoardError, InstallError, ReloadFailed
from boardcore.settings import load_settings
from cloudqueue.config import load_config
from cloudqueue.errors import QueueError
from cloudqueue.version import VersionAction
from supervisor import asservice
from supervisor.check import Preflight, as_json, format_results, require_private
from supervisor.daemon import Supervisor
from supervisor.health import HealthServer
from supervisor.install import install, plan

DEFAULT_CONFIG = "/etc/qick/config"
DEFAULT_CREDENTIALS = "/etc/qick/credentials"


def _files_options(default: object) -> argparse.ArgumentParser:
    """--config/--credentials, accepted before and after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", default=default, help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--credentials", default=default,
                   help=f"credentials file (default {DEFAULT_CREDENTIALS})")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qick-supervisor", description="The QICK board daemon.",
                                parents=[_files_options(None)])
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command")
    # SUPPRESS: a subcommand's own default must not overwrite a value given before it
    files = _files_options(argparse.SUPPRESS)
    st = sub.add_parser("status", help="print the running daemon's health", parents=[files])
    st.add_argument("--json", action="store_true", help="the raw /status JSON")
    ck = sub.add_parser("check", help="preflight: config, credentials, queue, device, board, "
                        "spool; one line per check, exit 0 only when all pass",
                        parents=[files])
    ck.add_argument("--json", action="store_true", help="the results as JSON")
    ck.add_argument("--as-service", action="store_true",
                    help="open the board inside qick.service's sandbox and environment "
                    "(systemd-run); if it fails there, name the property that blocks it")
    ck.add_argument("--unit", default=None, help="with --as-service: the unit file (default "
                    "/etc/systemd/system/qick.service if present, else the repository's)")
    ck.add_argument("--only", choices=("board",), help=argparse.SUPPRESS)  # --as-service's
    ins = sub.add_parser("install-service", help="write qick.service and its environment file "
                         "for this machine (the command's real path, PYNQ's state folder, the "
                         "profile scripts' environment) and run systemctl daemon-reload")
    ins.add_argument("--dry-run", action="store_true",
                     help="print the unit and the environment file; change nothing")
    ins.add_argument("--unit-path", default="/etc/systemd/system/qick.service",
                     help="where to write the unit (default %(default)s)")
    ins.add_argument("--etc", default="/etc", help="the /etc to read environment and "
                     "profile.d/*.sh from and write qick/board.env to (default %(default)s)")
    return p


def install_service_command(unit_path: str, etc: str, dry_run: bool) -> int:
    try:
        p = plan(unit_path, etc)
        if dry_run:
            print(f"# --- {p.unit_path} (dry run: nothing written)\n{p.unit}")
            print(f"# --- {p.env_path} (dry run: nothing written)\n{p.env_text}", end="")
        for note in p.profile.notes:
            print(f"qick-supervisor: note: {note}", file=sys.stderr)
        if dry_run:
            return exitcodes.OK
        for line in install(p):
            print(line)
    except ReloadFailed as exc:
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.FAILURE
    except InstallError as exc:
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    print("next: qick-supervisor check --as-service   (opens the board inside this unit's "
          "sandbox and environment)")
    print("then: systemctl enable --now qick")
    return exitcodes.OK


def check_command(config: str, creds: str, want_json: bool, only: Optional[str] = None) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # the board's own chatter
    results = Preflight(config, creds).run(only)
    print(as_json(results) if want_json else format_results(results))
    return exitcodes.OK if all(r.ok for r in results) else exitcodes.FAILURE


def as_service_command(config: Optional[str], creds: Optional[str],
                       unit_path: Optional[str]) -> int:
    """``check --as-service``: the board step in the unit's sandbox (supervisor.asservice).
    Without --config/--credentials: the files the unit's ExecStart names, else the defaults."""
    if not asservice.systemd_running():
        print("qick-supervisor: systemd is not running here (not PID 1), so the check cannot "
              "run in the unit's sandbox; run `check --as-service` on the board",
              file=sys.stderr)
        return exitcodes.FAILURE
    if os.geteuid() != 0:
        print("qick-supervisor: `check --as-service` starts a system service: run it as root "
              "(sudo)", file=sys.stderr)
        return exitcodes.FAILURE
    path = unit_path or asservice.default_unit_path()
    try:
        unit = asservice.read_unit(path)
        command = asservice.unit_command(unit)
        config = config or asservice.unit_option(unit, "--config") or DEFAULT_CONFIG
        creds = creds or asservice.unit_option(unit, "--credentials") or DEFAULT_CREDENTIALS
    except BoardError as exc:
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if unit_path:
        print(f"unit: {path}")
    elif path == asservice.INSTALLED_UNIT:
        print(f"unit: {path} (the installed one)")
    else:
        print(f"unit: {path} (the repository's: none is installed in /etc/systemd/system)")
    problem = asservice.command_problem(command, path)
    if problem:
        print(f"qick-supervisor: {problem}", file=sys.stderr)
        return exitcodes.FAILURE
    verdict = asservice.check_as_service(unit, config, creds, asservice.run_command)
    print("\n".join(verdict.lines))
    return exitcodes.OK if verdict.ok else exitcodes.FAILURE


def _paths(args) -> tuple:
    config = args.config or os.environ.get("QICK_CONFIG") or DEFAULT_CONFIG
    creds = args.credentials or os.environ.get("QICK_CREDENTIALS") or DEFAULT_CREDENTIALS
    return config, creds


def _check_queue_config(config: str, creds: str) -> None:
    """Fail early, with the file and key to fix, rather than in a child's log; refuse a
    credentials file other users may read."""
    cfg = load_config(config, creds)
    for section, key in (("service", "api_endpoint"), ("service", "oauth_endpoint"),
                         ("device", "id"), ("credentials", "id"), ("credentials", "secret")):
        cfg.require(section, key)
    require_private(creds)


def format_status(status: dict) -> str:
    lines = [f"board: {status.get('state')}" + (f" ({status['reason']})"
                                                  if status.get("reason") else "")]
    if status.get("simulated"):
        lines[0] += "  [SIMULATED board: no RFSoC; [executor] board = simulated]"
    for name, c in sorted(status.get("children", {}).items()):
        lines.append(f"  {name:<10} {c.get('state'):<9} pid {c.get('pid') or '-':<7} "
                     f"restarts {c.get('restarts', 0)}"
                     + (f"  last exit: {c['last_exit']}" if c.get("last_exit") else ""))
    cur = status.get("current")
    lines.append("current work: " + (f"{cur['work_id']} ({cur['programs_done']}/"
                                     f"{cur['programs_total']} programs, {cur['seconds']} s)"
                                     if cur else "none"))
    spool = status.get("spool", {})
    lines.append("spool: " + ", ".join(f"{k} {v}" for k, v in spool.items()))
    q = status.get("queue", {})
    lines.append("queue: " + ("reachable" if q.get("ok") else f"NOT reachable ({q.get('error')})"))
    fw = status.get("firmware") or {}
    lines.append("firmware: " + (f"{fw.get('board')} ({fw.get('board_kind')}), network "
                                 f"{fw.get('network')}" if fw else "unknown (executor not up)"))
    counts = status.get("counts", {})
    lines.append("finished: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def status_command(settings, as_json: bool) -> int:
    if settings.health is None:
        print("qick-supervisor: the daemon's health endpoint is off ([supervisor] health is "
              "empty); set it (e.g. 127.0.0.1:8787) and restart qick.service", file=sys.stderr)
        return exitcodes.FAILURE
    host, port = settings.health
    url = f"http://{host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            status = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"qick-supervisor: cannot reach the daemon's health endpoint at {url} ({exc}); "
              "is qick.service running? (systemctl status qick)", file=sys.stderr)
        return exitcodes.FAILURE
    print(json.dumps(status, indent=1, sort_keys=True) if as_json else format_status(status))
    return exitcodes.OK


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    config, creds = _paths(args)
    if args.command == "check" and args.as_service:
        return as_service_command(args.config, args.credentials, args.unit)
    if args.command == "check":
        return check_command(config, creds, args.json, args.only)
    if args.command == "install-service":
        return install_service_command(args.unit_path, args.etc, args.dry_run)
    try:
        settings = load_settings(config if os.path.exists(config) or args.config else None)
        if args.command == "status":
            return status_command(settings, args.json)
        _check_queue_config(config, creds)
    except BoardError as exc:
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except QueueError as exc:  # cloudqueue's ConfigError and friends: a user mistake
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="supervisor[%(process)d] %(levelname)s %(message)s")
    sup = Supervisor(settings, config, creds)
    if sup.simulated:
        logging.getLogger("qick.supervisor").warning(
            "SIMULATED board (%s): no RFSoC is used and results are modelled data; set "
            "[executor] board = qick in %s for the real board", settings.board_name, config)
    health = None
    if settings.health_enabled:
        try:
            health = HealthServer(settings.health, lambda: sup.snapshot).start()
        except OSError as exc:
            print(f"qick-supervisor: cannot serve health on {settings.health[0]}:"
                  f"{settings.health[1]} ({exc.strerror}); change [supervisor] health",
                  file=sys.stderr)
            return exitcodes.USAGE
        logging.getLogger("qick.supervisor").info("health on http://%s:%d/",
                                                  settings.health[0], health.port)
    sup.install_signal_handlers()
    try:
        return sup.run()
    except BoardError as exc:
        print(f"qick-supervisor: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    finally:
        if health is not None:
            health.stop()


if __name__ == "__main__":
    sys.exit(main())

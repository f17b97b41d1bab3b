"""``userclient session open|close|list|show`` (our service; feature ``sessions``; issue 12
item 6), and ``submit --session ID``. Thin: the rules are the service's; exit codes and
errors as ``userclient.cli`` documents them (a device with an open session already, or a
team that cannot pay the session's most: 7)."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from userclient import cli
from userclient.display import table

STATES = ("open", "closed")


def sessions_table(sessions: list[dict]) -> str:
    if not sessions:
        return "no sessions"
    return table([[s["SessionId"], s["DeviceId"], s["State"], s["OpenedAt"],
                   s["StartedAt"] or "-", _ends(s), str(s["Workloads"]),
                   _held(s)] for s in sessions],
                 ["SESSION ID", "DEVICE", "STATE", "OPENED", "STARTED", "ENDS", "WORK",
                  "HELD"])


def session_text(s: dict) -> str:
    lines = [f"session {s['SessionId']} on device {s['DeviceId']}: {s['State']}"]
    if s["State"] == "open":
        if s["StartedAt"] is None:
            lines.append(f"not started: its first workload queues as usual; then it holds "
                         f"the device for at most {s['MaxMinutes']:g} minutes, released "
                         f"after {s['IdleMinutes']:g} idle minutes")
        else:
            lines.append(f"holding the device since {s['StartedAt']}, until {s['EndsAt']} "
                         f"at the latest if nothing more runs")
    else:
        lines.append(f"closed at {s['ClosedAt']} ({_reason(s['CloseReason'])}); held the "
                     f"device {_held(s)}")
    if s.get("TeamId"):
        lines.append(f"charged to team {s['TeamId']}")
    return "\n".join(lines)


def _ends(s: dict) -> str:
    return s["EndsAt"] or (s["ClosedAt"] if s["State"] == "closed" else "-")


def _held(s: dict) -> str:
    if s["HeldSeconds"] is None:
        return "-"
    cost = f", cost {s['Cost']:g} credits" if s.get("Cost") is not None else ""
    return f"{s['HeldSeconds']:.1f} s{cost}"


def _reason(reason: str | None) -> str:
    return {"closed": "closed by hand", "max_time": "its maximum time passed",
            "idle": "idle past its limit"}.get(reason or "", reason or "unknown")


# --- commands ---------------------------------------------------------------------------
def cmd_session_open(args: argparse.Namespace) -> int:
    s = cli.client_from_args(args).open_session(args.device, max_minutes=args.max_minutes,
                                                idle_minutes=args.idle_minutes,
                                                team=args.team)
    cli.emit(args, s, f"{session_text(s)}\nsubmit in it with: userclient submit FILE "
                      f"--session {s['SessionId']}\nclose it with:     userclient session "
                      f"close {s['SessionId']}")
    return cli.EXIT_OK


def cmd_session_close(args: argparse.Namespace) -> int:
    s = cli.client_from_args(args).close_session(args.session_id)
    cli.emit(args, s, session_text(s))
    return cli.EXIT_OK


def cmd_session_show(args: argparse.Namespace) -> int:
    s = cli.client_from_args(args).get_session(args.session_id)
    cli.emit(args, s, session_text(s))
    return cli.EXIT_OK


def cmd_session_list(args: argparse.Namespace) -> int:
    sessions = cli.client_from_args(args).get_sessions(args.device, state=args.state)
    cli.emit(args, sessions, sessions_table(sessions))
    return cli.EXIT_OK


def minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of minutes above 0, not {text!r}")
    return value


# --- parser -----------------------------------------------------------------------------
def add_commands(add: Callable[[str, Any, str], argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Register ``session`` through ``cli.build_parser``'s ``add``; its subcommands take
    the common options (``common``) too."""
    session = add("session", None, "sessions: hold a device for your closed loop (our "
                                   "service)")
    sub = session.add_subparsers(dest="session_command", metavar="SUBCOMMAND", required=True)

    def leaf(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = leaf("open", cmd_session_open, "open a session on a device: once its first workload "
             "starts, the device runs only its work until you close it, its maximum time "
             "passes, or it is idle too long (one open session per device)")
    p.add_argument("device", metavar="DEVICE", help="DeviceId")
    p.add_argument("--max-minutes", type=minutes, metavar="M",
                   help="hold the device at most this long (default 30, at most 480)")
    p.add_argument("--idle-minutes", type=minutes, metavar="M",
                   help="release it after this long with nothing running (default 5)")
    p.add_argument("--team", metavar="TEAM", help="the team it is charged to (TeamId or "
                   "name; default: your default team)")
    p = leaf("close", cmd_session_close, "close a session (its work still queued is "
             "cancelled; the held time is charged)")
    p.add_argument("session_id", metavar="ID")
    p = leaf("show", cmd_session_show, "show one session")
    p.add_argument("session_id", metavar="ID")
    p = leaf("list", cmd_session_list, "your sessions, newest first (admins: everyone's)")
    p.add_argument("--device", metavar="ID")
    p.add_argument("--state", choices=STATES)

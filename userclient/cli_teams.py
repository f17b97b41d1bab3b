"""``userclient`` commands for teams and credits (our service; feature ``teams``; issue 12):
``team create|add|role|remove|default|list`` and ``credits grant|balance|request|requests|
approve|deny|usage``. Thin: the rules
are the service's; exit codes and errors as ``userclient.cli`` documents them."""
from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any, Callable

from userclient import cli
from userclient.display import table
from userclient.errors import UsageError

ROLES = ("scheduler", "user")


def teams_table(teams: list[dict]) -> str:
    """One line per member (a team without members: one line with ``-``)."""
    if not teams:
        return "no teams"
    rows = []
    for t in teams:
        for m in t["Members"] or [{"Email": "-", "Role": "-", "IsDefault": False}]:
            rows.append([t["Name"], m["Email"], m["Role"], "yes" if m["IsDefault"] else "",
                         t["TeamId"]])
    return table(rows, ["TEAM", "MEMBER", "ROLE", "DEFAULT", "TEAM ID"])


def ledger_table(ledger: dict) -> str:
    if not ledger["Lines"]:
        return "no ledger lines"
    return table([[str(x["EntryId"]), x["At"], x["Kind"], f"{x['Seconds']:+.3f}",
                   f"{x['BalanceAfter']:.3f}", x.get("WorkId") or "-", x.get("Note") or ""]
                  for x in ledger["Lines"]],
                 ["#", "AT", "KIND", "SECONDS", "BALANCE", "WORK ID", "NOTE"])


def _member_line(team: dict, user: str) -> str:
    member = next((m for m in team["Members"] if user in (m["UserId"], m["Email"])), None)
    if member is None:
        return f"team {team['Name']}: {user} is no longer a member"
    default = " (their default team)" if member["IsDefault"] else ""
    return f"team {team['Name']}: {member['Email']} is {member['Role']}{default}"


# --- commands ---------------------------------------------------------------------------
def cmd_team_create(args: argparse.Namespace) -> int:
    team = cli.client_from_args(args).create_team(args.name, scheduler=args.scheduler)
    text = f"team {team['Name']} created: {team['TeamId']}"
    if args.scheduler:
        text += f"; {args.scheduler} is its scheduler"
    cli.emit(args, team, text)
    return cli.EXIT_OK


def cmd_team_add(args: argparse.Namespace) -> int:
    team = cli.client_from_args(args).add_team_member(args.team, args.user, args.role)
    cli.emit(args, team, _member_line(team, args.user))
    return cli.EXIT_OK


def cmd_team_role(args: argparse.Namespace) -> int:
    team = cli.client_from_args(args).set_team_role(args.team, args.user, args.role)
    cli.emit(args, team, _member_line(team, args.user))
    return cli.EXIT_OK


def cmd_team_default(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    user = args.user or (client.config.get("user", "username") if client.config else None)
    if not user:
        raise UsageError("whose default team? give --user EMAIL (your e-mail), or add "
                         "`username = EMAIL` to [user] in your config")
    team = client.set_default_team(args.team, user)
    cli.emit(args, team, _member_line(team, user))
    return cli.EXIT_OK


def cmd_team_remove(args: argparse.Namespace) -> int:
    team = cli.client_from_args(args).remove_team_member(args.team, args.user)
    cli.emit(args, team, _member_line(team, args.user))
    return cli.EXIT_OK


def cmd_team_list(args: argparse.Namespace) -> int:
    teams = cli.client_from_args(args).get_teams()
    cli.emit(args, teams, teams_table(teams))
    return cli.EXIT_OK


def cmd_credits_grant(args: argparse.Namespace) -> int:
    line = cli.client_from_args(args).grant_credits(args.team, args.seconds, args.note)
    cli.emit(args, line, f"granted {line['Seconds']:g} device-seconds to team {line['Name']}; "
                         f"its balance is now {line['BalanceSeconds']:g} device-seconds")
    return cli.EXIT_OK


def cmd_credits_balance(args: argparse.Namespace) -> int:
    client = cli.client_from_args(args)
    if args.ledger:
        ledger = client.get_ledger(args.team)
        cli.emit(args, ledger, f"team {ledger['Name']}: {ledger['BalanceSeconds']:g} "
                               f"device-seconds\n{ledger_table(ledger)}")
    else:
        balance = client.get_balance(args.team)
        cli.emit(args, balance, f"team {balance['Name']}: {balance['BalanceSeconds']:g} "
                                f"device-seconds ({balance['Lines']} ledger lines; "
                                f"--ledger shows them)")
    return cli.EXIT_OK


def requests_table(requests: list[dict]) -> str:
    if not requests:
        return "no credit requests"
    rows = []
    for r in requests:
        decided = (f"{r['State']} by {r['DecidedBy']}" if r["DecidedBy"] else r["State"])
        granted = "-" if r["GrantedSeconds"] is None else f"{r['GrantedSeconds']:g}"
        rows.append([r["RequestId"], r["Name"], f"{r['Seconds']:g}", granted, decided,
                     r["Email"] or r["UserId"], r["CreatedAt"], r["Justification"][:60]])
    return table(rows, ["REQUEST ID", "TEAM", "SECONDS", "GRANTED", "STATE", "ASKED BY",
                        "AT", "JUSTIFICATION"])


def _decided_line(r: dict) -> str:
    if r["State"] == "approved":
        return (f"credit request {r['RequestId']} approved: {r['GrantedSeconds']:g} "
                f"device-seconds granted to team {r['Name']} (ledger line {r['EntryId']})")
    return f"credit request {r['RequestId']} denied: {r['DecisionNote']}"


#: usage columns: (answer's name, heading), in the order shown
USAGE_COLUMNS = (("Charged", "CHARGED"), ("Refunded", "REFUNDED"), ("Spent", "SPENT"),
                 ("BoardSeconds", "BOARD S"), ("Workloads", "WORKLOADS"),
                 ("Reservations", "RESERVATIONS"), ("Sessions", "SESSIONS"),
                 ("Total", "TOTAL"))


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def usage_table(report: dict) -> str:
    if not report["Rows"]:
        return "no usage"
    rows = [[r["Name"]] + [_number(r[name]) for name, _ in USAGE_COLUMNS]
            for r in report["Rows"]]
    rows.append(["TOTAL"] + [_number(report["Total"][name]) for name, _ in USAGE_COLUMNS])
    return table(rows, [report["By"].upper()] + [head for _, head in USAGE_COLUMNS])


def usage_csv(report: dict) -> str:
    """One header row, then one row per group (no total: a spreadsheet sums)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report["By"], "key"] + [name for name, _ in USAGE_COLUMNS])
    for r in report["Rows"]:
        writer.writerow([r["Name"], r["Key"]] + [r[name] for name, _ in USAGE_COLUMNS])
    return out.getvalue().rstrip("\n")


def read_estimate(path: str) -> dict:
    """The JSON object ``userclient estimate --json`` printed, from ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read --estimate {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"--estimate {path} is not JSON: give the file that `userclient "
                         "estimate WORKLOAD --device ID --json` wrote") from None
    if not isinstance(data, dict):
        raise UsageError(f"--estimate {path} is not a JSON object: give the file that "
                         "`userclient estimate WORKLOAD --device ID --json` wrote")
    return data


def cmd_credits_request(args: argparse.Namespace) -> int:
    estimate = read_estimate(args.estimate) if args.estimate else None
    r = cli.client_from_args(args).request_credits(args.team, args.seconds,
                                                   args.justification, estimate)
    cli.emit(args, r, f"credit request {r['RequestId']}: {r['Seconds']:g} device-seconds for "
                      f"team {r['Name']}, pending an admin's decision")
    return cli.EXIT_OK


def cmd_credits_requests(args: argparse.Namespace) -> int:
    found = cli.client_from_args(args).get_credit_requests(state=args.state, team=args.team)
    cli.emit(args, found, requests_table(found))
    return cli.EXIT_OK


def cmd_credits_approve(args: argparse.Namespace) -> int:
    r = cli.client_from_args(args).approve_credit_request(args.request_id, args.seconds)
    cli.emit(args, r, _decided_line(r))
    return cli.EXIT_OK


def cmd_credits_deny(args: argparse.Namespace) -> int:
    r = cli.client_from_args(args).deny_credit_request(args.request_id, args.note)
    cli.emit(args, r, _decided_line(r))
    return cli.EXIT_OK


def cmd_credits_usage(args: argparse.Namespace) -> int:
    if args.csv and args.json:
        raise UsageError("give --json or --csv, not both")
    report = cli.client_from_args(args).get_usage(args.by, start=args.start, end=args.end,
                                                  team=args.team)
    cli.emit(args, report, usage_csv(report) if args.csv else usage_table(report))
    return cli.EXIT_OK


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of device-seconds above 0, "
                                         f"not {text!r}")
    return value


# --- parser -----------------------------------------------------------------------------
def add_commands(add: Callable[[str, Any, str], argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Register ``team`` and ``credits`` through ``cli.build_parser``'s ``add``; their
    subcommands take the common options (``common``) too."""
    team = add("team", None, "teams and their members' roles (our service)")
    sub = team.add_subparsers(dest="team_command", metavar="SUBCOMMAND", required=True)

    def leaf(parent: Any, name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = leaf(sub, "create", cmd_team_create, "admin: create a team")
    p.add_argument("name")
    p.add_argument("--scheduler", metavar="USER",
                   help="its first member, as scheduler (UserId or e-mail)")
    p = leaf(sub, "add", cmd_team_add, "add a user to a team (its schedulers, admins)")
    p.add_argument("team", metavar="TEAM", help="TeamId or name")
    p.add_argument("user", metavar="USER", help="UserId or e-mail")
    p.add_argument("--role", choices=ROLES, default="user", help="default: user")
    p = leaf(sub, "role", cmd_team_role, "change a member's role (its schedulers, admins)")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("user", metavar="USER")
    p.add_argument("role", choices=ROLES)
    p = leaf(sub, "remove", cmd_team_remove, "take a user out of a team (its schedulers, "
             "admins)")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("user", metavar="USER")
    p = leaf(sub, "default", cmd_team_default, "make a team your default one (the team "
             "your work is charged to unless you name another)")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("--user", metavar="USER", help="a scheduler: for this member")
    leaf(sub, "list", cmd_team_list, "your teams and their members (admins: every team)")

    credits = add("credits", None, "a team's credits in device-seconds (our service)")
    sub = credits.add_subparsers(dest="credits_command", metavar="SUBCOMMAND", required=True)
    p = leaf(sub, "grant", cmd_credits_grant, "admin: grant a team device-seconds")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("seconds", type=seconds, metavar="SECONDS")
    p.add_argument("--note", required=True, help="why (kept in the ledger)")
    p = leaf(sub, "balance", cmd_credits_balance, "a team's balance (its schedulers, admins)")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("--ledger", action="store_true", help="also every ledger line")
    p = leaf(sub, "request", cmd_credits_request, "a scheduler: ask the admins for "
             "device-seconds for a team")
    p.add_argument("team", metavar="TEAM")
    p.add_argument("seconds", type=seconds, metavar="SECONDS")
    p.add_argument("--justification", required=True, help="what the credits are for")
    p.add_argument("--estimate", metavar="FILE",
                   help="attach what `userclient estimate ... --json` wrote")
    p = leaf(sub, "requests", cmd_credits_requests, "credit requests (admins: all; "
             "schedulers: their teams'), newest first")
    p.add_argument("--state", choices=("pending", "approved", "denied"))
    p.add_argument("--team", metavar="TEAM")
    p = leaf(sub, "approve", cmd_credits_approve, "admin: approve a credit request (grants "
             "its device-seconds)")
    p.add_argument("request_id", metavar="ID")
    p.add_argument("--seconds", type=seconds, metavar="N",
                   help="grant fewer device-seconds than asked")
    p = leaf(sub, "deny", cmd_credits_deny, "admin: deny a credit request")
    p.add_argument("request_id", metavar="ID")
    p.add_argument("--note", required=True, help="why (the scheduler reads it)")
    p = leaf(sub, "usage", cmd_credits_usage, "credits spent per team, user, device or "
             "month (yours; your teams' as scheduler; all as admin)")
    p.add_argument("--by", choices=("team", "user", "device", "month"), default="team",
                   help="default: team")
    p.add_argument("--team", metavar="TEAM", help="only this team")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="from (ISO 8601, a day 2026-11-01 or a month 2026-11; UTC)")
    p.add_argument("--to", dest="end", metavar="TIME", help="up to (not including)")
    p.add_argument("--csv", action="store_true", help="CSV with a header row")

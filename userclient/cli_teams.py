"""``userclient`` commands for teams and credits (our service; feature ``teams``; issue 12):
``team create|add|role|remove|default|list`` and ``credits grant|balance``. Thin: the rules
are the service's; exit codes and errors as ``userclient.cli`` documents them."""
from __future__ import annotations

import argparse
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

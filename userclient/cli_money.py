"""``userclient price set|show`` (our service; feature ``prices``; issue 12): a device's
prices in credits (device-seconds) per second used (pay-as-you-go) and per second reserved
(timeslots). Thin: the rules are the service's; exit codes and errors as ``userclient.cli``
documents them."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from userclient import cli
from userclient.display import table


def prices_text(prices: dict) -> str:
    lines = [f"device {prices['DeviceId']}: {prices['PerUsedSecond']:g} per used second, "
             f"{prices['PerReservedSecond']:g} per reserved second (accounting "
             f"{'on' if prices['Accounting'] else 'off'})"]
    if prices["History"]:
        lines.append(table([[h["Since"], f"{h['PerUsedSecond']:g}",
                             f"{h['PerReservedSecond']:g}", h["SetBy"]]
                            for h in prices["History"]],
                           ["SINCE", "PER USED S", "PER RESERVED S", "SET BY"]))
    else:
        lines.append("never priced: one credit per second")
    return "\n".join(lines)


def cmd_price_set(args: argparse.Namespace) -> int:
    prices = cli.client_from_args(args).set_prices(args.device, args.per_used_second,
                                                   args.per_reserved_second)
    cli.emit(args, prices, prices_text(prices))
    return cli.EXIT_OK


def cmd_price_show(args: argparse.Namespace) -> int:
    prices = cli.client_from_args(args).get_prices(args.device)
    cli.emit(args, prices, prices_text(prices))
    return cli.EXIT_OK


def price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of credits per second, 0 or "
                                         f"more, not {text!r}")
    return value


def add_commands(add: Callable[[str, Any, str], argparse.ArgumentParser],
                 common: argparse.ArgumentParser) -> None:
    """Register ``price`` through ``cli.build_parser``'s ``add``; its subcommands take
    the common options (``common``) too."""
    group = add("price", None, "a device's prices in credits per second (our service)")
    sub = group.add_subparsers(dest="price_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("set", parents=[common], help="admin: set a device's prices (turns "
                       "accounting on)", description="admin: set a device's prices, in "
                       "force from now; turns the facility's accounting on")
    p.set_defaults(func=cmd_price_set)
    p.add_argument("device", metavar="DEVICE", help="DeviceId")
    p.add_argument("--per-used-second", type=price, required=True, metavar="X",
                   help="credits per second of board time used (pay-as-you-go)")
    p.add_argument("--per-reserved-second", type=price, required=True, metavar="Y",
                   help="credits per second of a booked timeslot")
    p = sub.add_parser("show", parents=[common], help="a device's prices and their history",
                       description="a device's prices now and every change, newest first")
    p.set_defaults(func=cmd_price_show)
    p.add_argument("device", metavar="DEVICE", help="DeviceId")

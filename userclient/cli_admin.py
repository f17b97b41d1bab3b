"""``userclient`` commands of the admin lifecycle (our service; feature ``admin-lifecycle``):
users, disable-user, enable-user, reset-password, api-keys, create-api-key, revoke-api-key,
rotate-secret, rename-device, delete-device. Exit codes and errors as ``userclient.cli``
documents them; a one-time secret is printed (or written) before anything else can fail."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from cloudqueue.config import cannot_write, render_ini, write_atomically
from userclient import cli
from userclient.display import table
from userclient.errors import UsageError


def _when(value: str | None) -> str:
    return value or "-"


def users_table(users: list[dict]) -> str:
    if not users:
        return "no users"
    return table([[u["Email"], u.get("FullName") or "-", ",".join(u.get("Groups") or []),
                   "DISABLED" if u.get("Disabled") else "enabled", _when(u.get("CreatedAt")),
                   _when(u.get("LastLogin")), _when(u.get("LastKeyUse")), u["UserId"]]
                  for u in users],
                 ["EMAIL", "NAME", "GROUPS", "STATE", "CREATED", "LAST LOGIN",
                  "LAST KEY USE", "USER ID"])


def api_keys_table(keys: list[dict]) -> str:
    if not keys:
        return "no API keys"
    return table([[k["KeyId"], k.get("Label") or "-", _when(k.get("CreatedAt")),
                   _when(k.get("LastUsed"))] for k in keys],
                 ["KEY ID", "LABEL", "CREATED", "LAST USED"])


# --- commands ---------------------------------------------------------------------------
def cmd_users(args: argparse.Namespace) -> int:
    users = cli.client_from_args(args).get_users()
    cli.emit(args, users, users_table(users))
    return cli.EXIT_OK


def cmd_disable_user(args: argparse.Namespace) -> int:
    user = cli.client_from_args(args).disable_user(args.user)
    cli.emit(args, user, f"user {user['Email']} disabled: their API keys, tokens and refresh "
                         f"tokens are refused from now on (undo: userclient enable-user "
                         f"{user['Email']})")
    return cli.EXIT_OK


def cmd_enable_user(args: argparse.Namespace) -> int:
    user = cli.client_from_args(args).enable_user(args.user)
    cli.emit(args, user, f"user {user['Email']} enabled: their API keys work again; tokens "
                         f"from before the disable stay revoked (they log in again)")
    return cli.EXIT_OK


def cmd_reset_password(args: argparse.Namespace) -> int:
    made = cli.client_from_args(args).reset_password(args.user)
    cli.emit(args, made, f"user {made['Email']}: new temporary password (shown once): "
                         f"{made['TemporaryPassword']}\n"
                         f"their old password, refresh tokens and web portal sessions have "
                         f"ended; at the next login (web portal, or userclient login "
                         f"--username {made['Email']}) they choose their own")
    return cli.EXIT_OK


def cmd_api_keys(args: argparse.Namespace) -> int:
    keys = cli.client_from_args(args).get_api_keys(user=args.user)
    cli.emit(args, keys, api_keys_table(keys))
    return cli.EXIT_OK


def cmd_create_api_key(args: argparse.Namespace) -> int:
    made = cli.client_from_args(args).create_api_key(label=args.label, user=args.user)
    cli.emit(args, made, f"API key {made['KeyId']} created"
                         f"{' for ' + args.user if args.user else ''}"
                         f"{' (' + made['Label'] + ')' if made.get('Label') else ''}\n"
                         f"API key (shown once): {made['ApiKey']}\n"
                         f"put it in a config with: userclient configure --api-key-stdin")
    return cli.EXIT_OK


def cmd_revoke_api_key(args: argparse.Namespace) -> int:
    key = cli.client_from_args(args).revoke_api_key(args.key_id)
    cli.emit(args, key, f"API key {key['KeyId']} revoked: it is refused from now on")
    return cli.EXIT_OK


def check_writable(path: str) -> Path:
    """The path a secret will be written to, checked before the secret exists
    (``cloudqueue.config.cannot_write``): UsageError saying why it cannot be written."""
    problem = cannot_write(path)
    if problem:
        raise UsageError(f"--credentials-out {path}: {problem}; choose another file: "
                             "nothing was changed")
    return Path(path).expanduser()


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    target = check_writable(args.credentials_out) if args.credentials_out else None
    device = cli.client_from_args(args).rotate_device_secret(args.device_id)
    credentials = render_ini({"credentials": {"id": device["ClientId"],
                                              "secret": device["ClientSecret"]}})
    written = None
    if target is not None:
        try:
            write_atomically(target, credentials, mode=0o600)
            written = str(target)
        except OSError as exc:  # the secret exists now: never lose it, print it instead
            cli.emit(args, device, f"# /etc/qick/credentials on the board (mode 0600; the "
                                   f"secret is shown once)\n{credentials}")
            print(f"userclient: error: cannot write {target} ({exc.strerror}): the new "
                  "credentials are printed above instead; save them on the board",
                  file=sys.stderr)
            return cli.EXIT_USAGE
    if args.json:
        cli.emit(args, {**device, "CredentialsFile": written}, "")
        return cli.EXIT_OK
    print(f"device {device['DeviceName']} ({device['DeviceId']}): new secret; the old one "
          f"and its tokens are refused from now on")
    if written:
        print(f"board credentials written to {written} (mode 0600): copy them to "
              f"/etc/qick/credentials on the board and restart its daemon")
    else:
        print(f"\n# /etc/qick/credentials on the board (mode 0600; the secret is shown "
              f"once), then restart its daemon\n{credentials}")
    return cli.EXIT_OK


def cmd_rename_device(args: argparse.Namespace) -> int:
    device = cli.client_from_args(args).rename_device(args.device_id, args.name)
    cli.emit(args, device, f"device {device.DeviceId} renamed to {device.DeviceName}")
    return cli.EXIT_OK


def cmd_delete_device(args: argparse.Namespace) -> int:
    done = cli.client_from_args(args).delete_device(args.device_id, cancel_work=args.cancel_work)
    text = (f"device {done['DeviceName']} ({done['DeviceId']}) deleted: its credentials are "
            f"refused from now on; its finished work stays readable by its owners")
    if done.get("CancelledWork"):
        text += (f"\ncancelled {len(done['CancelledWork'])} unfinished workload(s): "
                 + " ".join(done["CancelledWork"]))
    cli.emit(args, done, text)
    return cli.EXIT_OK


# --- parser -----------------------------------------------------------------------------
def add_commands(add: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    """Register the commands through ``cli.build_parser``'s ``add``."""
    add("users", cmd_users, "admin: list the users (our service)")
    p = add("disable-user", cmd_disable_user, "admin: disable a user; their keys and tokens "
            "stop working at once (our service)")
    p.add_argument("user", metavar="USER", help="UserId or e-mail")
    p = add("enable-user", cmd_enable_user, "admin: enable a disabled user again")
    p.add_argument("user", metavar="USER", help="UserId or e-mail")
    p = add("reset-password", cmd_reset_password,
            "admin: give a user a new temporary password (printed once), e.g. one who forgot "
            "theirs, or yourself for the web portal (our service)")
    p.add_argument("user", metavar="USER", help="UserId or e-mail")

    p = add("api-keys", cmd_api_keys, "list your API keys (never the keys themselves)")
    p.add_argument("--user", metavar="USER", help="admins: another user's (UserId or e-mail)")
    p = add("create-api-key", cmd_create_api_key, "create an API key (printed once)")
    p.add_argument("--label", help="what it is for, e.g. laptop")
    p.add_argument("--user", metavar="USER", help="admins: for another user")
    p = add("revoke-api-key", cmd_revoke_api_key, "revoke an API key: refused at once")
    p.add_argument("key_id", metavar="KEY_ID")

    p = add("rotate-secret", cmd_rotate_secret, "admin: a new secret for a device's board; "
            "the old one stops at once")
    p.add_argument("device_id", metavar="ID")
    p.add_argument("--credentials-out", metavar="FILE",
                   help="write the board's new credentials here (mode 0600)")
    p = add("rename-device", cmd_rename_device, "admin: rename a device")
    p.add_argument("device_id", metavar="ID")
    p.add_argument("name")
    p = add("delete-device", cmd_delete_device, "admin: delete a device for good (refused "
            "while it has queued or running work unless --cancel-work)")
    p.add_argument("device_id", metavar="ID")
    p.add_argument("--cancel-work", action="store_true",
                   help="cancel its queued and running work, then delete it")


"""``userclient``: the command line over ``userclient.UserClient``.

Exit codes (the one table; scripts may rely on it):

====  =====================================================================
 0    ok (``wait``: the workload is DONE)
 1    the workload FAILED or was CANCELLED (``wait``, ``status``; ``results`` and
      ``show-results``: the file records it; on a stock service ``wait`` and ``status``
      read it from the results file too)
 2    usage: bad arguments, bad or missing config, a request the service rejected
 3    authentication or permission: bad API key, login refused, not allowed
 4    not found: no such device or workload (or not yours)
 5    the service is unavailable: network down, timeouts, 5xx; try again later
 6    not supported by this service (a stock Cloud Queue deployment)
 7    conflict: the workload's state does not allow it (cancel a finished one); the
      team's credits do not cover the work; no timeslot booked
 8    ``wait --timeout`` ran out; the workload is still queued or running
10    any other error
130   interrupted (Ctrl-C)
====  =====================================================================

User mistakes never print a traceback: errors are one line on stderr (and, with
``--json``, ``{"Error", "ErrorKind", "ExitCode"}`` on stdout).
"""
from __future__ import annotations

import argparse
import configparser
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from cloudqueue import errors
from cloudqueue.auth import cache_login, temporary_password_message
from cloudqueue.cognito import PasswordLogin, cognito_endpoint
from cloudqueue.config import (USER_CONFIG, cannot_write, exposed_secret, load_config,
                               loopback_host, read_ini, render_ini, write_atomically)
from cloudqueue.version import VersionAction
from userclient.client import UserClient
from userclient.display import (WaitDisplay, device_details, devices_table, plain,
                                team_queue_table, workload_details, workloads_table)
from userclient.errors import UsageError, WaitTimeout

EXIT_OK = 0
EXIT_WORKLOAD_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_NOT_SUPPORTED = 6
EXIT_CONFLICT = 7
EXIT_TIMEOUT = 8
EXIT_ERROR = 10
EXIT_INTERRUPTED = 130


def exit_code_for(error: errors.QueueError) -> int:
    table = [(WaitTimeout, EXIT_TIMEOUT), (errors.ConfigError, EXIT_USAGE),
             (errors.BadRequest, EXIT_USAGE), (errors.AuthError, EXIT_AUTH),
             (errors.Forbidden, EXIT_AUTH), (errors.NotFound, EXIT_NOT_FOUND),
             (errors.ServiceUnavailable, EXIT_UNAVAILABLE),
             (errors.NotSupported, EXIT_NOT_SUPPORTED), (errors.Conflict, EXIT_CONFLICT)]
    for kind, code in table:
        if isinstance(error, kind):
            return code
    return EXIT_ERROR


# --- output -----------------------------------------------------------------------------
def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(plain(data), indent=1, sort_keys=True))
    else:
        print(text)


def password_prompt(username: str) -> str:
    if not sys.stdin.isatty():
        return ""
    return getpass.getpass(f"Password for {username}: ")


def new_password_prompt(username: str) -> str:
    if not sys.stdin.isatty():
        raise errors.AuthError(temporary_password_message(username),
                               kind="new_password_required")
    first = getpass.getpass(f"{username} must choose a new password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise UsageError("the two passwords differ; run the command again")
    return first


class PasswordSource:
    """Where ``userclient login`` gets passwords: getpass on a terminal (a new one asked
    twice), else stdin, one a line: the current (or temporary) password, then the new one
    (read only when it is needed). Never argv."""

    def __init__(self, username: str, stream: TextIO | None = None,
                 ask: Callable[[str], str] | None = None):
        self.username = username
        self.stream = stream if stream is not None else sys.stdin
        self.ask = ask or getpass.getpass
        self.terminal = self.stream.isatty()

    def _line(self) -> str:
        return self.stream.readline().rstrip("\r\n")

    def current(self) -> str:
        if self.terminal:
            password = self.ask(f"Password for {self.username} (at the first login: the "
                                f"temporary one): ")
        else:
            password = self._line()
        if not password:
            raise UsageError("no password was given" + ("" if self.terminal else
                             " on stdin: pipe the current (or temporary) password as the "
                             "first line, and the new password as the second line"),
                             kind="password_needed")
        return password

    def new(self) -> str:
        if not self.terminal:
            password = self._line()
            if not password:
                raise UsageError(f"{self.username} needs a new password: give it as the "
                                 f"second line on stdin (nothing was changed)",
                                 kind="new_password_needed")
            return password
        print(f"Choose a new password for {self.username}.", file=sys.stderr)
        first = self.ask("New password: ")
        if self.ask("Repeat the new password: ") != first:
            raise UsageError("the two new passwords differ: nothing was changed; run "
                             "`userclient login` again", kind="password_mismatch")
        return first


def client_from_args(args: argparse.Namespace) -> UserClient:
    client = UserClient.from_config(args.config, password_prompt=password_prompt,
                                    new_password_prompt=new_password_prompt,
                                    timeout=args.request_timeout, out=None)
    loose = exposed_secret(client.config) if client.config else None
    if loose:
        print(f"userclient: warning: {loose}", file=sys.stderr)
    return client


# --- commands ---------------------------------------------------------------------------
def cmd_configure(args: argparse.Namespace) -> int:
    target = Path(args.config or os.environ.get("QICK_CONFIG") or USER_CONFIG).expanduser()
    values: dict[str, dict[str, str | None]] = {"service": {}, "user": {}}
    if target.is_file():
        values.update(read_ini(target))  # only this file: never the board's credentials
    service = values.setdefault("service", {})
    user = values.setdefault("user", {})
    for key in ("api_endpoint", "oauth_endpoint", "cognito_userpool", "cognito_url",
                "clientid", "region"):
        value = getattr(args, key)
        if value is not None:
            service[key] = value
    if args.username is not None:
        user["username"] = args.username
    key = None
    if args.api_key_stdin:  # on a terminal: asked without echo, as a password
        key = (getpass.getpass("API key: ") if sys.stdin.isatty()
               else sys.stdin.readline()).strip()
        if not key:
            raise UsageError("--api-key-stdin: nothing was read from stdin")
    elif os.environ.get("QICK_API_KEY"):
        key = os.environ["QICK_API_KEY"]
    if key:
        user["api_key"] = key
    if not service.get("api_endpoint"):
        raise UsageError("give --api-endpoint (the queue's API URL) at least once")
    refuse_unwritable("--config", target)
    checked = None
    if not args.no_check:
        from userclient.configcheck import check_service
        checked = check_service(service["api_endpoint"], user.get("api_key"),
                                timeout=args.request_timeout)
    write_atomically(target, render_ini(values))
    emit(args, {"Config": str(target), "Checked": checked},
         f"checked: {checked}\nwrote {target}" if checked
         else f"wrote {target} (not checked: --no-check)")
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    username = args.username or config.get("user", "username")
    if not username:
        raise UsageError(f"whose login? give --username EMAIL (the e-mail your admin used "
                         f"in add-user) or add `username = EMAIL` to [user] in "
                         f"{config.path or 'your config'}")
    url, client_id = cognito_endpoint(config)
    source = PasswordSource(username)
    result = PasswordLogin(url, client_id, username, timeout=args.request_timeout).login(
        source.current(), source.new, change_password=args.change_password)
    cached = cache_login(config, username, result.tokens)
    lines = [f"password of {username} changed" if result.changed
             else f"logged in as {username}: the password is good"]
    if cached:
        lines.append(f"tokens cached in {cached}")
    if config.get("user", "username") != username:
        lines.append(f"the original SideQICK client logs in with `username = {username}` in "
                     f"[user] and `cognito_url = {url}` in [service]")
    emit(args, {"Username": username, "PasswordChanged": result.changed, "CognitoUrl": url,
                "TokenCache": str(cached) if cached else None}, "\n".join(lines))
    return EXIT_OK


def cmd_add_user(args: argparse.Namespace) -> int:
    answer = client_from_args(args).add_user(args.email, args.name, admin=args.admin)
    if args.json:
        emit(args, answer, "")
    elif answer.get("ApiKey"):
        print(f"user {args.email} created (UserId {answer.get('UserId')})\n"
              f"API key (shown once):            {answer['ApiKey']}\n"
              f"temporary password (shown once): {answer.get('TemporaryPassword')}\n"
              f"they choose their own password with: userclient login --username "
              f"{args.email}")
    else:
        print(f"user {args.email} created; they will receive an e-mail with a temporary "
              f"password and choose their own with: userclient login --username {args.email}")
    return EXIT_OK


def cmd_add_device(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    if args.mock or args.board or args.mirror:
        if args.config_out or args.credentials_out:
            raise UsageError("a mock device runs inside the queue service: it has no board "
                             "files (drop --config-out/--credentials-out)")
        mock = {"MirrorOf": args.mirror} if args.mirror else {"Board": args.board or "zcu216-v2"}
        device = client.add_device(args.name, args.refresh_timeout, mock=mock)
        what = (f"mirrors device {args.mirror}'s firmware" if args.mirror
                else f"simulates board {mock['Board']}")
        emit(args, device, f"mock device {device['DeviceName']} created: DeviceId "
                           f"{device['DeviceId']} ({what}); the queue service runs it")
        return EXIT_OK
    check_board_paths(args)  # before the device exists: its secret is shown only once
    device = client.add_device(args.name, args.refresh_timeout)
    try:
        config_text, credentials_text = client.board_files(device)
    except errors.QueueError:
        print(f"device {device['DeviceName']} created: DeviceId {device['DeviceId']}, "
              f"ClientId {device['ClientId']}, ClientSecret {device['ClientSecret']} "
              "(shown once: keep it)")
        raise
    warn_loopback(config_text)
    written, failed = [], []
    for path, text, what in ((args.config_out, config_text, "config"),
                             (args.credentials_out, credentials_text, "credentials")):
        if not path:
            continue
        try:
            write_atomically(path, text, mode=0o600)
            written.append(f"board {what} written to {path} (mode 0600)")
        except OSError as exc:
            failed.append(f"{path} ({exc.strerror or exc})")
    if failed:
        return board_files_not_written(args, device, config_text, credentials_text, failed)
    if args.json:
        emit(args, device, "")
        return EXIT_OK
    print(f"device {device['DeviceName']} created: DeviceId {device['DeviceId']}")
    if written:
        print("\n".join(written))
    if not args.config_out:
        print(f"\n# /etc/qick/config on the board\n{config_text}")
    if not args.credentials_out:
        print(f"# /etc/qick/credentials on the board (mode 0600; the secret is shown once)\n"
              f"{credentials_text}")
    return EXIT_OK


def check_board_paths(args: argparse.Namespace) -> None:
    """``add-device --config-out/--credentials-out``: refuse paths that cannot be written
    before the device is created (its secret could not be written, nor asked for again)."""
    paths = [(flag, path) for flag, path in (("--config-out", args.config_out),
                                             ("--credentials-out", args.credentials_out))
             if path]
    for flag, path in paths:
        problem = cannot_write(path)
        if problem:
            raise UsageError(f"{flag} {path}: {problem}; no device was created")
    if len(paths) == 2 and Path(args.config_out).expanduser().resolve() == \
            Path(args.credentials_out).expanduser().resolve():
        raise UsageError("--config-out and --credentials-out name the same file: give two "
                         "files; no device was created")


def refuse_unwritable(flag: str, path: str | os.PathLike) -> None:
    """A file the command will write, checked before anything is asked of the service (so
    a typo in a path is one line, exit 2, not a traceback after the work is done)."""
    problem = cannot_write(path)
    if problem:
        raise UsageError(f"{flag} {path}: {problem}; nothing was written")


def warn_loopback(config_text: str) -> None:
    """Warn (not fatal: a board on this machine is fine) when a board's config would
    point at a loopback address, which a board on another machine cannot reach."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(config_text)
    for key in ("api_endpoint", "oauth_endpoint"):
        url = parser.get("service", key, fallback=None)
        host = loopback_host(url)
        if host:
            print(f"userclient: warning: the board's config points at {url} ({key}), a "
                  f"loopback address: only a board on this same machine can reach it. For "
                  f"a remote board, set [service] {key} in your config (or qick-queue init "
                  f"--public-url URL) to the address boards reach the service at",
                  file=sys.stderr)
            return


def board_files_not_written(args: argparse.Namespace, device: dict, config_text: str,
                            credentials_text: str, failed: list[str]) -> int:
    """The device exists but its files could not be written: print them (the secret is
    shown once), say so on stderr, exit non-zero."""
    if args.json:
        emit(args, device, "")
    else:
        print(f"device {device['DeviceName']} created: DeviceId {device['DeviceId']}\n"
              f"Its board files could NOT be written; here they are: save them by hand "
              f"(the secret is shown only this once)\n\n"
              f"# /etc/qick/config on the board\n{config_text}\n"
              f"# /etc/qick/credentials on the board (mode 0600)\n{credentials_text}")
    print(f"userclient: error: device {device['DeviceId']} was created, but writing "
          f"{', '.join(failed)} failed: its files are printed on stdout (keep the secret)",
          file=sys.stderr)
    return EXIT_ERROR


def cmd_devices(args: argparse.Namespace) -> int:
    devices = client_from_args(args).list_devices()
    emit(args, devices, devices_table(devices))
    return EXIT_OK


def cmd_device(args: argparse.Namespace) -> int:
    if args.save_soccfg:
        refuse_unwritable("--save-soccfg", args.save_soccfg)
    client = client_from_args(args)
    device = client.get_device(args.device_id)
    if args.save_soccfg:
        client.get_soccfg(args.device_id, save_to=args.save_soccfg)
    text = device_details(device)
    if args.save_soccfg:
        text += f"\nconfiguration saved to {args.save_soccfg}"
    emit(args, device, text)
    return EXIT_OK


def _estimate(args: argparse.Namespace) -> int:
    """``estimate FILE`` and ``submit FILE --estimate``: never submits."""
    from userclient.estimate import estimate_file, estimate_text
    soccfg, source, client = None, "", None
    if args.soccfg:
        try:
            with open(args.soccfg, encoding="utf-8") as f:
                soccfg = json.load(f)
        except OSError as exc:
            raise UsageError(f"cannot read --soccfg {args.soccfg}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--soccfg {args.soccfg} is not JSON ({exc}): give the soccfg "
                             "a board uploaded (userclient device ID --save-soccfg FILE)"
                             ) from None
        if not isinstance(soccfg, dict):
            raise UsageError(f"--soccfg {args.soccfg} is not a JSON object (a QICK soccfg)")
        source = f"--soccfg {args.soccfg}"
    elif args.device:
        client = client_from_args(args)
        soccfg = client.get_soccfg(args.device)
        source = f"device {args.device}"
    est = estimate_file(args.file, soccfg, source=source or "the given soccfg")
    data = {"File": str(args.file), "Submitted": False, **est.to_json()}
    text = estimate_text(str(args.file), est)
    cost = client.estimated_cost(args.device, est.seconds) if client is not None else None
    if cost is not None:
        data.update(cost)
        text += "\n" + cost_text(cost, args.device)
    emit(args, data, text + "\nnothing was submitted")
    return EXIT_OK


def cost_text(cost: dict, device_id: str) -> str:
    return (f"estimated cost: {cost['EstimatedCost']:g} credits (device-seconds): "
            f"{cost['Seconds']:g} s x {cost['PerUsedSecond']:g} per used second on device "
            f"{device_id}")


def cmd_estimate(args: argparse.Namespace) -> int:
    return _estimate(args)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.estimate:
        return _estimate(args)
    if args.soccfg:
        raise UsageError("--soccfg is for --estimate only")
    if not args.device and not args.session:
        raise UsageError("submit needs --device ID (list them with: userclient devices)")
    if args.on_slot_end and not args.timeslot:
        raise UsageError("--on-slot-end is for --timeslot work only")
    client = client_from_args(args)
    if args.session and not args.device:  # the session's own device
        args.device = client.get_session(args.session)["DeviceId"]
    data: dict[str, Any] = {}
    if not args.force:
        check_submission(client, args)
        if not args.timeslot and not args.session:  # paid at booking / at the close
            data = client.estimated_cost(args.device, own_estimate(args.file),
                                         max_seconds=args.max_seconds) or {}
    work_id = client.create_work(args.file, args.device, args.priority, name=args.name,
                                 team=args.team, max_seconds=args.max_seconds,
                                 timeslot=args.timeslot, on_slot_end=args.on_slot_end,
                                 session_id=args.session)
    if data:  # after the submit, so that a refusal (it says the numbers) stays one line
        print(f"userclient: {cost_text(data, args.device)}", file=sys.stderr)
    emit(args, {"WorkId": work_id, **data}, work_id)
    return EXIT_OK


def own_estimate(path: str) -> float | None:
    """The workload file's board time from the clock it recorded (as the service
    estimates it on arrival); None when that cannot be read."""
    from userclient.estimate import estimate_file
    try:
        return estimate_file(path).seconds
    except errors.QueueError:
        return None


def check_submission(client: UserClient, args: argparse.Namespace) -> None:
    """``submit``'s checks (``userclient.precheck``): refuse what the board would refuse."""
    from userclient.precheck import check_before_submit
    try:
        checked = check_before_submit(client, args.file, args.device)
    except (errors.BadRequest, errors.ConfigError) as exc:
        if exc.kind == "no_such_file":
            raise
        raise UsageError(f"{exc.message}. Nothing was submitted (--force queues it anyway)",
                         kind=exc.kind) from None
    for warning in checked.warnings:
        print(f"userclient: warning: {warning}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    work = client.final_status(client.status(args.work_id))
    emit(args, work, workload_details(work))
    return EXIT_WORKLOAD_FAILED if work.WorkStatus in ("FAILED", "CANCELLED") else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    items = client_from_args(args).list_work(args.device, status=args.status,
                                        account_id=args.account, limit=args.limit,
                                        team=args.team)
    emit(args, items, team_queue_table(items) if args.team else workloads_table(items))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    started = time.monotonic()
    display = None if args.json else WaitDisplay(sys.stderr, sys.stderr.isatty())
    try:
        work = client.wait_until_done(
            args.work_id, interval=args.interval, progress=False, timeout=args.timeout,
            on_progress=(lambda w: display.update(w, time.monotonic() - started))
            if display else None)
    finally:
        if display:
            display.close()
    emit(args, work, workload_details(work))
    return EXIT_OK if work.WorkStatus == "DONE" else EXIT_WORKLOAD_FAILED


def cmd_results(args: argparse.Namespace) -> int:
    refuse_unwritable("--output", args.output)
    done = client_from_args(args).download_results(args.work_id, args.output)
    try:
        summary = summarize(done.path)
    except UsageError:
        if args.summary:
            raise
        summary = None  # not a results file of ours (or no h5py): nothing recorded to say
    status = summary["Status"] if summary else None
    error = (summary["ErrorMessage"] or "") if summary else ""
    text = f"results saved to {done.path} ({done.size} bytes)"
    if status not in (None, "DONE"):
        # partial results of a failed or cancelled workload; on a stock service (no FAILED
        # state) the file is the only place the board's error reaches the user
        text += f"\nthe board recorded {status}: {error}"
        text += (f"\n{len(summary['Programs'])} of {summary['ProgramsTotal']} programs "
                 "completed: read them with read_results(path, partial=True)")
    data = {"Path": str(done.path), "Size": done.size, "SHA256": done.sha256,
            "RecordedStatus": status, "RecordedError": error}
    if args.summary:
        from userclient.display import results_summary_text
        text += "\n\n" + results_summary_text(summary)
        data["Summary"] = summary
    emit(args, data, text)
    return EXIT_OK if status in (None, "DONE") else EXIT_WORKLOAD_FAILED


def summarize(path: Any) -> dict:
    """``qickwork.summarize_results`` with the CLI's errors (a missing file, not HDF5)."""
    try:
        from qickwork.results import summarize_results
    except ImportError as exc:
        raise UsageError(f"reading results files needs h5py and numpy ({exc}): install "
                         "qick-queue[user]") from None
    try:
        return summarize_results(path)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path} (download results with: userclient "
                         "results ID -o FILE)") from None
    except OSError as exc:
        raise UsageError(f"{path} is not a results file (HDF5) ({exc}): give the file "
                         "that userclient results ID -o FILE saved") from None


def cmd_show_results(args: argparse.Namespace) -> int:
    from userclient.display import results_summary_text
    summary = summarize(args.file)
    emit(args, summary, results_summary_text(summary))
    return EXIT_OK if summary["Status"] in (None, "DONE") else EXIT_WORKLOAD_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    work = client_from_args(args).cancel(args.work_id)
    text = (f"workload {work.WorkId} cancelled" if work.WorkStatus == "CANCELLED"
            else f"cancel requested for {work.WorkId} ({work.WorkStatus}); the board "
                 f"stops it shortly")
    emit(args, work, text)
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------
def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="config file (default: $QICK_CONFIG, ~/.config/qick.conf, "
                             "/etc/qick/config)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    common.add_argument("--request-timeout", type=positive, default=argparse.SUPPRESS,
                        metavar="S", help="timeout of each HTTP request (default 30)")
    parser = argparse.ArgumentParser(
        prog="userclient", parents=[common],
        description="Share a QICK board through a queue: submit workloads, wait, get "
                    "results; admins add users and devices.",
        epilog="Exit codes: 0 ok, 1 workload failed/cancelled, 2 usage or config, 3 auth, "
               "4 not found, 5 service unavailable, 6 not supported by this service, "
               "7 conflict, 8 wait timed out, 10 other, 130 interrupted.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("configure", cmd_configure, "write or update your config file (mode 0600)")
    for key in ("api_endpoint", "oauth_endpoint", "cognito_userpool", "cognito_url",
                "clientid", "region", "username"):
        p.add_argument("--" + key.replace("_", "-"), dest=key)
    p.add_argument("--api-key-stdin", action="store_true",
                   help="read your API key from stdin, asked without echo on a terminal (or "
                        "set QICK_API_KEY); never an argument")
    p.add_argument("--no-check", action="store_true",
                   help="write without checking the URL and the key against the service "
                        "(offline setup)")

    p = add("login", cmd_login,
            "log in with your password; at the first login choose a new one (replacing the "
            "temporary password). Passwords: asked on a terminal, else read from stdin, one a "
            "line: the current (or temporary) password, then the new one")
    p.add_argument("--username", metavar="EMAIL",
                   help="your e-mail (default: [user] username in the config)")
    p.add_argument("--change-password", action="store_true",
                   help="change your password (asks for a new one after the current one)")

    p = add("add-user", cmd_add_user, "admin: create a user (prints their API key once)")
    p.add_argument("email")
    p.add_argument("--name", required=True, help="full name")
    p.add_argument("--admin", action="store_true", help="make them an admin (our service)")

    p = add("add-device", cmd_add_device, "admin: create a device and its board's files")
    p.add_argument("name")
    p.add_argument("--refresh-timeout", type=int, default=60, metavar="S",
                   help="seconds without heartbeat before it shows OFFLINE (default 60)")
    p.add_argument("--config-out", metavar="FILE", help="write the board's config here")
    p.add_argument("--credentials-out", metavar="FILE",
                   help="write the board's credentials here (mode 0600)")
    p.add_argument("--mock", action="store_true",
                   help="a simulated device the queue service runs (our service only)")
    mock = p.add_mutually_exclusive_group()
    mock.add_argument("--board", metavar="NAME", help="with --mock: the simulated board "
                      "(zcu216-v2 or zcu216-v1; default zcu216-v2)")
    mock.add_argument("--mirror", metavar="DEVICE_ID", help="with --mock: run on the "
                      "firmware (soccfg) this real device uploaded")

    add("devices", cmd_devices, "list the devices")
    p = add("device", cmd_device, "show one device")
    p.add_argument("device_id", metavar="ID")
    p.add_argument("--save-soccfg", metavar="FILE", help="save its QICK configuration (JSON)")

    p = add("submit", cmd_submit, "submit a workload file; prints its WorkId")
    p.add_argument("file")
    p.add_argument("--device", metavar="ID", help="the device to run it (required to submit)")
    p.add_argument("--priority", default="MEDIUM", type=str.upper,
                   choices=["HIGH", "MEDIUM", "LOW"])
    p.add_argument("--name", help="a name for it (default: the file's name)")
    p.add_argument("--estimate", action="store_true",
                   help="only print the estimated board time; submit nothing")
    p.add_argument("--soccfg", metavar="FILE", help="with --estimate: the board's soccfg JSON")
    p.add_argument("--force", action="store_true",
                   help="queue the file without checking it (by default a file that is not "
                        "a workload, or was compiled for another firmware than the "
                        "device's, is refused)")
    p.add_argument("--session", metavar="ID", help="submit in this open session of yours "
                   "(userclient session open); --device defaults to its device")
    p.add_argument("--team", metavar="TEAM",
                   help="the team that pays for it (TeamId or name; default: your default "
                        "team; our service)")
    p.add_argument("--max-seconds", type=positive, metavar="S",
                   help="cost cap: the board stops the run after S seconds (our service)")
    p.add_argument("--timeslot", action="store_true",
                   help="run it in your team's booked timeslot (paid at booking)")
    p.add_argument("--on-slot-end", choices=["wait", "fail"],
                   help="with --timeslot: unfinished at the slot's end, wait for the next "
                        "slot (default) or fail")

    p = add("estimate", cmd_estimate,
            "estimated board time of a workload file (per program and total); submits "
            "nothing")
    p.add_argument("file")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", metavar="ID",
                       help="use this device's configuration (fetched from the queue)")
    where.add_argument("--soccfg", metavar="FILE", help="use this soccfg JSON")

    p = add("status", cmd_status, "show one workload (exit 1 when it FAILED or was "
                                  "CANCELLED)")
    p.add_argument("work_id", metavar="ID")

    p = add("list", cmd_list, "list workloads (all pages), newest first")
    p.add_argument("--device", metavar="ID")
    p.add_argument("--status", type=str.upper)
    p.add_argument("--account", metavar="ACCOUNT_ID", help="admins: one user's work")
    p.add_argument("--team", metavar="TEAM",
                   help="your team's work (TeamId or name), with queue positions")
    p.add_argument("--limit", type=int, metavar="N", help="at most N")

    p = add("wait", cmd_wait, "wait until a workload is finished (run again to resume)")
    p.add_argument("work_id", metavar="ID")
    p.add_argument("--timeout", type=positive, metavar="S", help="give up after S seconds")
    p.add_argument("--interval", type=positive, default=10.0, metavar="S",
                   help="longest pause between polls (default 10)")

    p = add("results", cmd_results, "download a finished workload's results (HDF5)")
    p.add_argument("work_id", metavar="ID")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--summary", action="store_true",
                   help="also print what the file holds (as show-results does)")

    p = add("show-results", cmd_show_results,
            "what a results file holds: status, error, firmware, qick version, timings, "
            "and each program's datasets with shapes and dtypes (exit 1 when not DONE)")
    p.add_argument("file")

    p = add("cancel", cmd_cancel, "cancel a workload (our service only)")
    p.add_argument("work_id", metavar="ID")

    from userclient import cli_admin  # users, API keys, device secret/name/delete
    cli_admin.add_commands(add)
    from userclient import cli_teams  # team, credits (imports this module, as cli_admin)
    cli_teams.add_commands(add, common)
    from userclient import cli_calendar  # reserve, reservations, maintenance, windows, calendar
    cli_calendar.add_commands(add)
    from userclient import cli_sessions  # session (imports this module, as cli_teams)
    cli_sessions.add_commands(add, common)
    from userclient import cli_money  # price (imports this module, as cli_admin)
    cli_money.add_commands(add, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("config", None), ("json", False), ("request_timeout", 30.0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except errors.QueueError as exc:
        code = exit_code_for(exc)
        print(f"userclient: error: {exc.message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"Error": exc.message, "ErrorKind": exc.kind, "ExitCode": code}))
        return code
    except KeyboardInterrupt:
        print("userclient: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

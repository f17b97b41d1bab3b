"""``qick-queue``: create a store (``init``), run the service (``serve``), move a SQLite
store into PostgreSQL and S3 (``migrate``).

A thin layer: argument parsing and messages; the work is in ``datadir``, ``app`` and
``migrate``.
Exit codes: 0 done, 1 a problem the message explains, 2 wrong arguments (argparse).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shlex
import signal
import socket
import sys
from pathlib import Path

from cloudqueue.errors import QueueError
from queueservice.settings import (DEFAULT_ADMIN_EMAIL, DEFAULT_PORT, MOCK_DEADLINE_SECONDS,
                                   MOCK_MEMORY_MB, ServiceLimits)
from cloudqueue.version import VersionAction
from qickbase.atomicfile import atomic_write

log = logging.getLogger("qick_queue")


DATABASE_HELP = ("the state in PostgreSQL (postgresql://user@host/dbname; needs "
                 "qick-queue[postgres]) instead of queue.db in --data (the default); init "
                 "and serve take the same URL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qick-queue",
                                     description="The embedded Cloud Queue service for QICK boards.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a new store and its first admin")
    init.add_argument("--data", required=True, type=Path, help="the data folder to create")
    init.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help=f"port written into admin.conf (default {DEFAULT_PORT})")
    init.add_argument("--admin-email", default=DEFAULT_ADMIN_EMAIL,
                      help=f"the first admin's e-mail (default {DEFAULT_ADMIN_EMAIL})")
    init.add_argument("--public-url", metavar="URL",
                      help="the URL boards and people reach the service at (e.g. "
                           "http://queue.lab.example.org:8080), written into admin.conf and "
                           "so into the board configs add-device makes (default "
                           "http://127.0.0.1:PORT: this machine only)")
    init.add_argument("--database", metavar="URL", help=DATABASE_HELP)

    d = ServiceLimits()
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--data", required=True, type=Path, help="the data folder (from init)")
    serve.add_argument("--database", metavar="URL", help=DATABASE_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--port-file", type=Path,
                       help="write the bound port here once listening (for --port 0)")
    serve.add_argument("--prefix", default="", help="path prefix of the API, e.g. /dev")
    serve.add_argument("--public-url", help="the service root as clients reach it (for "
                                            "presigned URLs; default: the request's Host)")
    serve.add_argument("--files", metavar="s3://BUCKET/PREFIX",
                       help="keep workload, results and configuration files in this S3 "
                            "bucket (or S3-compatible store: AWS_ENDPOINT_URL) under PREFIX, "
                            "with the standard AWS credentials (environment, ~/.aws); "
                            "default: DATA/files")
    serve.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb)
    serve.add_argument("--lease-seconds", type=float, default=d.lease_seconds)
    serve.add_argument("--max-attempts", type=int, default=d.max_attempts)
    serve.add_argument("--upload-ttl-seconds", type=float, default=d.upload_ttl_seconds)
    serve.add_argument("--url-lifetime-seconds", type=int, default=d.url_lifetime_seconds)
    serve.add_argument("--header-timeout-seconds", type=float, default=d.header_timeout_seconds,
                       help="a request's headers must arrive within this long, else 408 and "
                            f"the connection closes (default {d.header_timeout_seconds:g})")
    serve.add_argument("--body-timeout-seconds", type=float, default=d.body_timeout_seconds,
                       help="an API request's body must arrive within this long, a file "
                            "upload's must not pause longer, else 408 and the connection "
                            f"closes (default {d.body_timeout_seconds:g})")
    serve.add_argument("--keep-alive-seconds", type=float, default=d.keep_alive_seconds,
                       help="an idle kept-alive connection closes after this long "
                            f"(default {d.keep_alive_seconds:g})")
    serve.add_argument("--max-connections", type=int, default=d.max_connections,
                       help="connections open at once; more are answered 503 and closed "
                            f"(default {d.max_connections}; the open-file limit is raised "
                            "to fit when it can be)")
    serve.add_argument("--mock-deadline-seconds", type=float, default=MOCK_DEADLINE_SECONDS,
                       help="longest run of one workload on a mock device "
                            f"(default {MOCK_DEADLINE_SECONDS:g})")
    serve.add_argument("--mock-memory-mb", type=int, default=MOCK_MEMORY_MB,
                       help="memory limit of a mock device's executor "
                            f"(default {MOCK_MEMORY_MB})")
    serve.add_argument("--stock-protocol", action="store_true",
                       help="answer as the stock AWS service does (403 on our own paths such as "
                            "/capabilities, its request models, 500 for unknown ids, no long "
                            "poll): for testing clients against the stock protocol")
    serve.add_argument("--accounting", action="store_true",
                       help="turn the facility's accounting on (teams, credits, prices: "
                            "docs/facility.md); it stays on. Setting a device's price "
                            "(`userclient price set`) turns it on too")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every request")

    migrate = sub.add_parser("migrate", help="move a SQLite store into PostgreSQL (and its "
                                             "files into S3); stop its service first")
    migrate.add_argument("--data", required=True, type=Path,
                         help="the data folder whose queue.db (and files) to move; it is "
                              "left as it is")
    migrate.add_argument("--to-database", required=True, metavar="URL",
                         help="an empty PostgreSQL database (postgresql://user@host/dbname; "
                              "needs qick-queue[postgres]), given the schema here: do not "
                              "run init on it")
    migrate.add_argument("--to-files", metavar="s3://BUCKET/PREFIX",
                         help="copy the files into this S3 bucket (or S3-compatible store: "
                              "AWS_ENDPOINT_URL) under PREFIX, with the standard AWS "
                              "credentials; default: they stay in DATA/files")
    migrate.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


class HideSecretQueries(logging.Filter):
    """Keep secrets in query strings out of uvicorn's access log: the query of a
    ``/files/...`` path (a presigned URL's signature, which lets whoever reads the log fetch
    or replace the file until it expires) is dropped, and a calendar feed token
    (``Feed=``, which reads calendars as its user until revoked) is masked. Other paths
    keep theirs (ids and options, no secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, _, query = args[2].partition("?")
            if query and path.startswith("/files/"):
                record.args = (*args[:2], path, *args[3:])
            elif "feed=" in query.lower():
                masked = "&".join("Feed=***" if part.lower().startswith("feed=") else part
                                  for part in query.split("&"))
                record.args = (*args[:2], f"{path}?{masked}", *args[3:])
        return True


def _write_port_file(path: Path, port: int) -> None:
    atomic_write(path, f"{port}\n", mode=0o644)


def _limits(args: argparse.Namespace) -> ServiceLimits:
    limits = ServiceLimits(max_upload_mb=args.max_upload_mb, lease_seconds=args.lease_seconds,
                    max_attempts=args.max_attempts, upload_ttl_seconds=args.upload_ttl_seconds,
                    url_lifetime_seconds=args.url_lifetime_seconds,
                    header_timeout_seconds=args.header_timeout_seconds,
                    body_timeout_seconds=args.body_timeout_seconds,
                    keep_alive_seconds=args.keep_alive_seconds,
                    max_connections=args.max_connections,
                    stock_protocol=args.stock_protocol)
    for name in ("max_upload_mb", "lease_seconds", "max_attempts", "upload_ttl_seconds",
                 "url_lifetime_seconds", "header_timeout_seconds", "body_timeout_seconds",
                 "keep_alive_seconds", "max_connections"):
        if getattr(limits, name) <= 0:
            raise QueueError(f"--{name.replace('_', '-')} must be more than 0")
    return limits


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from queueservice.app import create_app
    from queueservice.connections import bounded_protocol, reserve_descriptors
    from queueservice.pricing import PriceStore

    limits = _limits(args)
    if args.accounting and limits.stock_protocol:
        raise QueueError("--accounting needs this service's own API (teams, prices): "
                         "leave out --stock-protocol")
    reserve_descriptors(limits.max_connections)
    app = create_app(args.data, limits, prefix=args.prefix, public_url=args.public_url,
                     files=args.files, database=args.database)
    if args.accounting:
        PriceStore(app.state.service.identities.db).turn_on_accounting()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a response written in two parts
    # (headers, body) waits for the client's delayed ACK on keep-alive connections (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        raise QueueError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose "
                         "another --port, or stop what uses it") from None
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log,
                            timeout_graceful_shutdown=2, lifespan="on",
                            # the original device client polls every 5 s: keep its connection
                            # open longer than that (uvicorn's default of 5 s races with it)
                            timeout_keep_alive=limits.keep_alive_seconds,
                            http=bounded_protocol(limits.header_timeout_seconds,
                                                  limits.max_connections))
    logging.getLogger("uvicorn.access").addFilter(HideSecretQueries())
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        if args.port_file:
            _write_port_file(args.port_file, port)
        log.info("qick-queue listening on http://%s:%d%s (data %s)", args.host, port,
                 args.prefix, args.data)
        if not limits.stock_protocol:
            root = app.state.service.public_url or f"http://{args.host}:{port}"
            log.info("the web portal: %s/ (log in with your e-mail and password)",
                     root.rstrip("/"))
        stopping = asyncio.Event()
        fleet = asyncio.create_task(_lead_fleet(app, args, port, stopping))
        try:
            # uvicorn waits for open requests before it stops: end the long polls now.
            while not server.should_exit and not task.done():
                await asyncio.sleep(0.05)
            await app.state.service.close_waits()
        finally:
            stopping.set()
            await fleet
    await task


#: how often a replica that does not run the mock devices tries to take them over
FLEET_TAKEOVER_SECONDS = 2.0


async def _lead_fleet(app, args: argparse.Namespace, port: int,
                      stopping: asyncio.Event) -> None:
    """Run the mock devices' board daemons while this replica leads (one replica at a time:
    ``replicas.Leadership``; on SQLite always this process), until ``stopping``."""
    from queueservice.replicas import Leadership

    loop = asyncio.get_running_loop()
    leadership = Leadership(app.state.service.workloads.db, "mock-fleet")
    fleet = None
    try:
        while not stopping.is_set():
            held = await loop.run_in_executor(None, leadership.hold)
            if held and fleet is None:
                fleet = _start_fleet(app, args, port)
            elif not held and fleet is not None:
                log.warning("lost the mock devices' lead (the database connection): "
                            "stopping their board daemons; another replica takes them over")
                await loop.run_in_executor(None, fleet.stop)
                fleet = app.state.service.fleet = None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), FLEET_TAKEOVER_SECONDS)
    finally:
        if fleet is not None:
            await loop.run_in_executor(None, fleet.stop)
        leadership.release()


def _start_fleet(app, args: argparse.Namespace, port: int):
    """The mock devices' board daemons, which reach this service over loopback."""
    from queueservice.mockfleet import MockFleet
    host = args.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    root = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    svc = app.state.service
    fleet = MockFleet(svc.identities,
                      lambda device_id: svc.files.read_text(f"configs/{device_id}"),
                      root + svc.prefix, root, Path(args.data) / "mock",
                      deadline_seconds=args.mock_deadline_seconds,
                      memory_mb=args.mock_memory_mb)
    svc.fleet = fleet
    fleet.start()
    return fleet


def _print_migration(args: argparse.Namespace) -> None:
    from queueservice.migrate import migrate

    result = migrate(args.data, args.to_database, args.to_files)
    serve = ["qick-queue", "serve", "--data", str(args.data), "--database", result.database]
    if result.files_url:
        serve += ["--files", result.files_url]
    command = shlex.join(serve)
    if args.json:
        print(json.dumps({"Database": result.database, "Rows": result.rows,
                          "Files": result.files, "Bytes": result.bytes,
                          "FilesTo": result.files_url, "Serve": command}, indent=1))
        return
    print(f"migrated the store in {args.data} into {result.database}")
    print("  rows: " + ", ".join(f"{name} {count}" for name, count in result.rows.items()))
    if result.files_url:
        print(f"  files: {result.files} ({result.bytes} bytes) copied to {result.files_url}")
    else:
        print(f"  files: not copied; they stay in {args.data}/files, where the migrated "
              "service reads them (--to-files s3://BUCKET/PREFIX moves them to S3)")
    print(f"{args.data}/queue.db is unchanged: to roll back, serve it as before")
    print(f"serve the migrated store with: {command}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.command in ("init", "migrate") else
                        getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # libraries' own INFO lines are noise beside the service's: only their warnings show
    # (the AWS library: where it found credentials, the endpoint; Alembic: its plugins,
    # at every start)
    for library in ("boto3", "botocore", "s3transfer", "alembic"):
        logging.getLogger(library).setLevel(logging.WARNING)
    try:
        if args.command == "init":
            from queueservice.datadir import init_data_dir
            result = init_data_dir(args.data, port=args.port, admin_email=args.admin_email,
                                   public_url=args.public_url, database=args.database)
            again = " --database URL" if args.database else ""  # never print a password
            print(f"created the qick-queue store in {args.data}")
            print(f"admin {result.admin_email}: userclient config with the API key in "
                  f"{result.admin_conf} (mode 0600; keep it private)")
            if args.public_url:
                print(f"start the service with: qick-queue serve --data {args.data}{again} "
                      f"--port {args.port} --host ADDRESS --public-url {result.url}\n"
                      f"(ADDRESS: where {result.url} arrives, e.g. 0.0.0.0 for every "
                      f"interface, or 127.0.0.1 behind a reverse proxy)")
            else:
                print(f"start the service with: qick-queue serve --data {args.data}{again} "
                      f"--port {args.port}\n(admin.conf points at {result.url}: only "
                      f"this machine reaches it; give --public-url URL for remote boards)")
            print(f"the web portal is at {result.url}/ once it runs: the admin has no "
                  f"password, get a temporary one with: userclient --config "
                  f"{result.admin_conf} reset-password {result.admin_email}")
            return 0
        if args.command == "migrate":
            _print_migration(args)
            return 0
        # uvicorn handles SIGTERM/SIGINT (graceful shutdown) and re-raises the signal
        # afterwards; these handlers make that re-raise a clean exit.
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, lambda *_: None)
        asyncio.run(_serve(args))
        log.info("qick-queue stopped")
        return 0
    except QueueError as exc:
        print(f"qick-queue: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

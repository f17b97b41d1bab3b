"""Benchmark of the queue service past one process, three set-ups side by side in one run.
Prints figures; never asserts on time.

    .venv/bin/python bench/bench_replicas.py [--samples 50] [--rows 100000] [--threads 4,12]
        [--seconds 3] [--wait-seconds 20] [--setups sqlite,pg1,pg3] [--database postgresql://...]

Set-ups (``--setups``, any subset, in this order):
  sqlite  SQLite, one ``qick-queue serve`` process (the embedded default);
  pg1     PostgreSQL, one replica (``serve --database postgresql://...``);
  pg3     PostgreSQL, three replicas on the same database: three serve processes, each
          with its own data folder holding the same ``secret`` (and admin.conf). The
          client balances: requests go round-robin over the replicas' URLs (what a load
          balancer does in a deployment).
PostgreSQL is a server of the bench's own (tests/pgserver.py: a temporary cluster, run as
``nobody`` when root), or the one ``--database URL`` names: a database there whose user may
CREATE DATABASE; each PostgreSQL set-up gets a new database, dropped at the end.

Each set-up's store first gets ``--rows`` workloads (inserted straight through the store
module, on both engines), then, for each set-up:
1. requests/s for submit (``POST /workloads``) and status (``GET /workloads/{id}``) with
   N client threads (``--threads``), each on its own keep-alive connections
   (``common.LightCaller``: http.client, about half of ``requests``' CPU per call: on a
   2-core machine that also runs PostgreSQL and the replicas, a heavier client takes the
   CPU the replicas would use and hides their scaling);
2. hand-over latency (p50, p99): from the start of a workload's upload through replica A to
   the device, its long poll parked on replica B (``WaitSeconds``: ``--wait-seconds``,
   20), being handed it (one process: A = B);
3. ``GET /workloads`` latency over the stored workloads (five kinds of page).
Then a table: set-up x metric, and the submit ratio 3 replicas / 1 replica.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (LightCaller, device_parked, handout_latency,  # noqa: E402
                          insert_workloads, list_latency, ms, pct, submit_status_rates)
from qickbase.atomicfile import atomic_write  # noqa: E402
from queueservice.datadir import DataDir, init_data_dir  # noqa: E402
from queueservice.db import make_engine  # noqa: E402
from queueservice.files import LocalFiles  # noqa: E402
from queueservice.settings import DEFAULT_ADMIN_EMAIL  # noqa: E402
from tests.conftest import QueueService  # noqa: E402
from tests.pgserver import PostgresServer, find_binaries  # noqa: E402
from tests.server.api import Api, World  # noqa: E402

#: name -> (title, replicas, on PostgreSQL)
SETUPS = {
    "sqlite": ("SQLite, 1 process", 1, False),
    "pg1": ("PostgreSQL, 1 replica", 1, True),
    "pg3": ("PostgreSQL, 3 replicas", 3, True),
}


class RoundRobin(Api):
    """An ``Api`` whose requests go round-robin over the replicas' URLs, starting at the
    ``first``-th (a load balancer's job, done by the client here). One thread uses it."""

    def __init__(self, bases: list[str], token: str, first: int = 0):
        super().__init__(bases[0], token)
        self.bases = [base.rstrip("/") for base in bases]
        self.turn = first

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.base = self.bases[self.turn % len(self.bases)]
        self.turn += 1
        return super().call(method, path, **kwargs)


def balanced(replicas: list[QueueService], token: str, first: int = 0) -> Api:
    if len(replicas) == 1:
        return Api(replicas[0].url, token)
    return RoundRobin([replica.url for replica in replicas], token, first)


def new_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; answers its URL."""
    name = "qq_bench_" + uuid.uuid4().hex[:10]
    _on_server(server_url, f"CREATE DATABASE {name}")
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, url: str) -> None:
    _on_server(server_url, f"DROP DATABASE IF EXISTS {make_url(url).database}")


def _on_server(server_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE) on that server."""
    engine = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def start_replicas(folder: Path, count: int, database: str | None) -> list[QueueService]:
    """``count`` serve processes on one store: the first data folder made by init, the
    others holding a copy of its ``secret`` (0600) and admin.conf, and their own files/."""
    first = DataDir(folder / "r0", database)
    init_data_dir(first.root, port=0, admin_email=DEFAULT_ADMIN_EMAIL, database=database)
    roots = [first.root]
    for i in range(1, count):
        other = DataDir(folder / f"r{i}", database)
        other.root.mkdir(mode=0o700, parents=True)
        atomic_write(other.secret_path, first.secret_path.read_bytes())
        atomic_write(other.admin_conf, first.admin_conf.read_bytes())
        LocalFiles(other.files_path).create()
        roots.append(other.root)
    options = {"database": database} if database else {}
    replicas: list[QueueService] = []
    try:
        for root in roots:
            replicas.append(QueueService(root, **options).start())
    except BaseException:
        stop(replicas)
        raise
    return replicas


def answers(replica: QueueService) -> dict[str, int]:
    """The replica's HTTP answers so far by status class (its ``/metrics``)."""
    text = requests.get(replica.root + "/metrics", timeout=10).text
    prefix = 'qick_queue_requests_total{code="'
    return {line[len(prefix):len(prefix) + 3]: int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines() if line.startswith(prefix)}


def stop(replicas: list[QueueService]) -> None:
    for replica in replicas:
        replica.stop()


def measure(replicas: list[QueueService], database: str | None,
            args: argparse.Namespace) -> dict[str, float]:
    """Every figure of one set-up, printed; answers the table's figures by metric."""
    world = World(replicas[0])
    figures: dict[str, float] = {}

    print(f"store: {args.rows} workloads inserted through the store module")
    rows_device = world.device()
    rows_user, rows_user_id = world.user()
    first_ms = insert_workloads(database or DataDir(replicas[0].data_dir).db_path,
                                rows_device.id, rows_user_id, args.rows)

    for threads in args.threads:
        print(f"requests/s, {threads} client threads (keep-alive, http.client)")
        users = [LightCaller([r.url for r in replicas], world.user()[0].token, first=i)
                 for i in range(threads)]
        submits, statuses = submit_status_rates(users, world.device().id, args.seconds)
        print(f"  submit  POST /workloads         {submits:7.0f} req/s")
        print(f"  status  GET /workloads/{{id}}     {statuses:7.0f} req/s")
        figures[f"submit req/s, {threads} threads"] = submits
        figures[f"status req/s, {threads} threads"] = statuses

    a, b = replicas[0], replicas[1 % len(replicas)]
    where = "replica A = B (one process)" if a is b else "upload on replica A, device on B"
    print(f"hand-over latency, {where}, long poll WaitSeconds={args.wait_seconds:g}")
    user = Api(a.url, world.user()[0].token)
    device = world.device()
    device = dataclasses.replace(device, api=Api(b.url, device.api.token))
    latencies = handout_latency(user, device, args.samples, None, args.wait_seconds,
                                parked=device_parked(b))
    print(f"  upload start -> device handed it {ms(latencies)}")
    figures["hand-over p50 ms"] = pct(latencies, 50) * 1000
    figures["hand-over p99 ms"] = pct(latencies, 99) * 1000

    print(f"GET /workloads with {args.rows} workloads stored")
    kinds = list_latency(balanced(replicas, replicas[0].admin_key),
                         balanced(replicas, rows_user.token), rows_device.id, first_ms,
                         args.rows)
    figures["list p50 ms, slowest kind"] = max(pct(v, 50) for v in kinds.values()) * 1000
    figures["list p99 ms, slowest kind"] = max(pct(v, 99) for v in kinds.values()) * 1000

    counts = [answers(replica) for replica in replicas]
    print("answers per replica: " + ", ".join(
        f"r{i} {sum(c.values())} ({c.get('5xx', 0)} 5xx)" for i, c in enumerate(counts)))
    return figures


def run_setup(name: str, tmp: Path, server_url: str | None,
              args: argparse.Namespace) -> dict[str, float]:
    title, count, on_postgres = SETUPS[name]
    print(f"\n== {title} ==")
    if count > 1:
        print(f"   (the client balances: requests go round-robin over the {count} replicas' "
              "URLs, a load balancer's job)")
    database = new_database(server_url) if on_postgres else None
    try:
        replicas = start_replicas(tmp / name, count, database)
        try:
            return measure(replicas, database, args)
        finally:
            stop(replicas)
    finally:
        if database:
            drop_database(server_url, database)


def print_table(results: dict[str, dict[str, float]]) -> None:
    names = list(results)
    metrics = list(next(iter(results.values())))
    print("\n== summary ==")
    print(f"{'':32}" + "".join(f"{SETUPS[n][0]:>24}" for n in names))
    for metric in metrics:
        print(f"{metric:32}" + "".join(f"{results[n][metric]:>24.1f}" for n in names))
    if "pg1" in results and "pg3" in results:
        ratios = ", ".join(
            f"{results['pg3'][m] / results['pg1'][m]:.2f}x ({m.split(', ')[1]})"
            for m in metrics if m.startswith("submit"))
        print(f"submit, 3 replicas / 1 replica: {ratios}")
    print("issue 11 targets: 3 replicas >= 1.5x the submit of 1; cross-replica hand-over "
          "p50 < 20 ms; list < 50 ms")


def is_postgresql_url(text: str) -> bool:
    try:
        return make_url(text).get_backend_name() == "postgresql"
    except ArgumentError:
        return False


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50, help="hand-overs per set-up")
    parser.add_argument("--wait-seconds", type=float, default=20,
                        help="the device's long poll (WaitSeconds, at most 20)")
    parser.add_argument("--rows", type=int, default=100_000, help="workloads stored")
    parser.add_argument("--threads", default="4,12",
                        help="client thread counts for requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long each requests/s figure is measured")
    parser.add_argument("--setups", default="sqlite,pg1,pg3",
                        help=f"comma-separated subset of {','.join(SETUPS)}")
    parser.add_argument("--database", metavar="URL",
                        help="an existing PostgreSQL server (postgresql://user@host/db, the "
                             "user allowed to CREATE DATABASE) instead of one of our own")
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown or not setups:
        parser.error(f"--setups {args.setups!r}: give a comma-separated subset of "
                     f"{','.join(SETUPS)}")
    args.setups = [s for s in SETUPS if s in setups]
    try:
        threads = [int(n) for n in args.threads.split(",")]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        parser.error(f"--threads {args.threads!r}: give positive numbers, e.g. 4,12")
    args.threads = threads
    if args.database is not None and not is_postgresql_url(args.database):
        parser.error(f"--database: give a postgresql://user@host/dbname URL (of a user "
                     f"allowed to CREATE DATABASE), not {args.database!r}")
    if not 0 < args.wait_seconds <= 20:
        parser.error(f"--wait-seconds {args.wait_seconds:g}: give more than 0, at most 20 "
                     "(the service's longest long poll)")
    if args.samples < 1 or args.rows < 1:
        parser.error("--samples and --rows must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    server: PostgresServer | None = None
    server_url = args.database
    if server_url is None and any(SETUPS[name][2] for name in args.setups):
        binaries = find_binaries()
        if binaries is None:
            print("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql, or give "
                  "--database URL, or --setups sqlite", file=sys.stderr)
            return 2
        server = PostgresServer(binaries)
        server.start()
        server_url = server.url()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {name: run_setup(name, Path(tmp), server_url, args)
                       for name in args.setups}
    except SQLAlchemyError as exc:  # e.g. the --database server refused us
        print(f"PostgreSQL failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
    print_table(results)
    print(f"(whole run {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

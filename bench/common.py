"""What the queue-service benchmarks share (bench_queue.py, bench_replicas.py): percentiles,
requests/s from client threads, the long-poll hand-out latency, and ``GET /workloads``
latency over workloads inserted straight through the store module."""
from __future__ import annotations

import dataclasses
import http.client
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from queueservice.db import Database
from queueservice.settings import ServiceLimits
from queueservice.workloads import WorkloadStore
from tests.server.api import Api, Device, long_polls, put_file


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def ms(values: list[float]) -> str:
    return (f"p50 {pct(values, 50) * 1000:8.1f} ms   p99 {pct(values, 99) * 1000:8.1f} ms   "
            f"(n={len(values)})")


def throughput(fn: Callable[[int], None], seconds: float, threads: int) -> float:
    """Calls of ``fn(thread_index)`` per second, ``threads`` threads calling for ``seconds``."""
    count = [0] * threads
    end = time.monotonic() + seconds

    def run(i):
        while time.monotonic() < end:
            fn(i)
            count[i] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    return sum(count) / seconds


class LightCaller:
    """A load generator's caller as light as the standard library makes it: keep-alive
    ``http.client`` connections, one per service URL, the requests going round-robin over
    the URLs from the ``first``-th (what a load balancer does). It answers what
    ``submit_status_rates`` reads (``status_code``, ``json()``, ``text``) and costs about
    half of ``requests``' CPU per call (measured: 22 % against 49 % of a core at the same
    rate), so that on a small machine the figures are the service's more than the
    client's. One thread uses it."""

    def __init__(self, bases: list[str], token: str, first: int = 0):
        self.targets = [urlsplit(base) for base in bases]
        self.connections: dict[int, http.client.HTTPConnection] = {}
        self.headers = {"Authorization": f"Bearer {token}",
                        "Content-Type": "application/json"}
        self.turn = first

    def call(self, method: str, path: str, body: Any = None) -> "LightAnswer":
        index = self.turn % len(self.targets)
        self.turn += 1
        target = self.targets[index]
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):  # a keep-alive connection the server closed: once more
            conn = self.connections.get(index)
            if conn is None:
                conn = self.connections[index] = http.client.HTTPConnection(
                    target.hostname, target.port, timeout=30)
            try:
                conn.request(method, target.path + path, body=data, headers=self.headers)
                answer = conn.getresponse()
                return LightAnswer(answer.status, answer.read())
            except (http.client.HTTPException, OSError):
                conn.close()
                del self.connections[index]
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, json: Any = None) -> "LightAnswer":
        return self.call("POST", path, json)

    def get(self, path: str) -> "LightAnswer":
        return self.call("GET", path)


@dataclasses.dataclass
class LightAnswer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def submit_status_rates(users: list[Any], device_id: str, seconds: float) -> tuple[float, float]:
    """Requests/s of submit (``POST /workloads``, LOW) for ``seconds``, then of status
    (``GET /workloads/{id}`` of the thread's own submits) for ``seconds``: one thread per
    caller in ``users``, each on its own keep-alive session."""
    mine: list[list[str]] = [[] for _ in users]

    def do_submit(i):
        resp = users[i].post("/workloads", json={"DeviceId": device_id, "Priority": "LOW"})
        if resp.status_code != 201:
            raise RuntimeError(f"POST /workloads: {resp.status_code} {resp.text}")
        mine[i].append(resp.json()["WorkId"])

    def do_status(i):
        resp = users[i].get(f"/workloads/{random.choice(mine[i])}")
        if resp.status_code != 200:
            raise RuntimeError(f"GET /workloads/{{id}}: {resp.status_code} {resp.text}")

    submits = throughput(do_submit, seconds, len(users))
    return submits, throughput(do_status, seconds, len(users))


def handout_latency(user: Api, device: Device, samples: int, poll_period: float | None,
                    wait_seconds: float = 20,
                    parked: Callable[[], bool] | None = None) -> list[float]:
    """``user`` submits ``samples`` workloads one by one; a thread plays ``device``,
    long-polling (``WaitSeconds=wait_seconds``) when ``poll_period`` is None, else polling
    every ``poll_period`` s. Each latency: from the start of the workload's upload to the
    device being handed it. ``user`` and ``device`` may talk to different replicas.
    ``parked``: true once the device's long poll waits (``device_parked``); each upload
    starts only then, so the figure is the wake-up's, not a poll that came by chance."""
    got: dict[str, float] = {}
    stop = threading.Event()

    def device_loop():
        while not stop.is_set():
            if poll_period is None:
                resp = device.next_work(wait=wait_seconds)
            else:
                resp = device.next_work()
            body = resp.json()
            if body:
                got[body["WorkId"]] = time.monotonic()
                device.report(body["WorkId"], {"Outcome": "FAILED", "ErrorMessage": "bench",
                                               "ErrorKind": "device_error"})
            elif poll_period is not None:
                stop.wait(poll_period)

    thread = threading.Thread(target=device_loop, daemon=True)
    thread.start()
    time.sleep(0.2)
    latencies = []
    longest = wait_seconds + 10 if poll_period is None else poll_period + 10
    for _ in range(samples):
        if poll_period is not None:
            time.sleep(random.uniform(0, poll_period))  # land anywhere in the poll cycle
        created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "HIGH"}).json()
        if parked is not None:
            wait_until(parked, 10, "the device's long poll to park")
        start = time.monotonic()
        put_file(created["UploadUrl"], b"x" * 1024)
        deadline = time.monotonic() + longest
        while created["WorkId"] not in got:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the device was not handed {created['WorkId']} within "
                                   f"{longest:.0f} s of its upload")
            time.sleep(0.0005)
        latencies.append(got[created["WorkId"]] - start)
    stop.set()
    return latencies


def device_parked(service: Any) -> Callable[[], bool]:
    """For ``handout_latency``: whether a device's long poll waits on ``service`` (its
    ``/metrics``; the bench's device is the only one polling there)."""
    return lambda: long_polls(service, "device") >= 1


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {seconds:g} s")
        time.sleep(0.002)


def insert_workloads(database: Path | str, device_id: str, user_id: str, rows: int) -> int:
    """Insert ``rows`` workloads of ``device_id`` straight through the store module (into
    the SQLite file or the PostgreSQL URL ``database``), half of them ``user_id``'s, the
    rest 50 other owners'; 80 % DONE, 10 % FAILED, 10 % READY, 10 ms apart, the newest now.
    Prints how long it took; answers the first one's CreatedAt (ms)."""
    db = Database(database)
    store = WorkloadStore(db, ServiceLimits())
    start_ms = int(time.time() * 1000) - rows * 10
    statuses = ["DONE"] * 8 + ["FAILED", "READY"]
    t0 = time.monotonic()

    def gen():
        for i in range(rows):
            owner = user_id if i % 2 == 0 else str(uuid.UUID(int=i % 50))
            yield {"work_id": str(uuid.uuid4()), "device_id": device_id, "account_id": owner,
                   "priority": "MEDIUM", "status": statuses[i % 10],
                   "created_at": start_ms + i * 10, "ready_at": start_ms + i * 10 + 1}

    try:
        store.bulk_insert(gen())
    finally:
        db.close()
    print(f"  inserted {rows} workloads in {time.monotonic() - t0:.1f} s")
    return start_ms


def list_latency(admin: Api, user: Api, device_id: str, first_ms: int, rows: int,
                 requests_each: int = 200) -> dict[str, list[float]]:
    """Time ``GET /workloads`` over the workloads of ``insert_workloads`` (``first_ms``:
    its answer): five kinds of page, ``requests_each`` requests of each; prints a line per
    kind and answers the latencies (s) by kind."""

    def timed(api: Api, params: dict) -> list[float]:
        out = []
        for _ in range(requests_each):
            t = time.perf_counter()
            resp = api.get("/workloads", params=params)
            out.append(time.perf_counter() - t)
            if resp.status_code != 200:
                raise RuntimeError(f"GET /workloads {params}: {resp.status_code} {resp.text}")
        return out

    middle = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime((first_ms + rows * 5) / 1000))
    deep_key = json.dumps({"WorkId": "0", "DeviceId": device_id, "CreatedAt": middle})
    kinds = {
        "admin, newest page (5)": (admin, {"Limit": 5}),
        "admin, page in the middle (5)": (admin, {"Limit": 5, "ExclusiveStartKeyJson": deep_key}),
        "user, own page (100)": (user, {"Limit": 100}),
        "user, one device (5)": (user, {"Limit": 5, "DeviceId": device_id}),
        "user, Status=READY (5)": (user, {"Limit": 5, "Status": "READY"}),
    }
    results = {}
    for name, (api, params) in kinds.items():
        results[name] = timed(api, params)
        print(f"  {name:<32}{ms(results[name])}")
    return results

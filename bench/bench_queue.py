"""Benchmark of the embedded queue service. Prints figures; never asserts on time.

    .venv/bin/python bench/bench_queue.py [--samples 50] [--poll-samples 10] [--rows 100000]
                                          [--wait-samples 8]

1. hand-out latency: from the start of a workload upload to a device being handed it,
   for a long-polling device (``WaitSeconds=20``) and for a device that polls every 5 s
   like the original client (p50, p99);
2. requests/s for submit (``POST /workloads``) and status (``GET /workloads/{id}``);
3. ``GET /workloads`` latency with ``--rows`` workloads stored (inserted straight into
   SQLite through the store module);
4. outcome latency: from a device's results upload to the user's ``wait_until_done``
   returning, with the workload long poll (``workload-wait``) and with the polling it
   replaced (the same client told the service lacks the feature), the outcome landing
   0..8 s into the wait.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudqueue.auth import ApiKeyAuth  # noqa: E402
from cloudqueue.client import Capabilities, QueueClient  # noqa: E402
from queueservice.db import Database  # noqa: E402
from queueservice.settings import ServiceLimits  # noqa: E402
from queueservice.workloads import WorkloadStore  # noqa: E402
from tests.conftest import start_queue_service  # noqa: E402
from tests.server.api import World, put_file  # noqa: E402
from userclient.client import UserClient  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def ms(values: list[float]) -> str:
    return (f"p50 {pct(values, 50) * 1000:8.1f} ms   p99 {pct(values, 99) * 1000:8.1f} ms   "
            f"(n={len(values)})")


def handout_latency(world: World, samples: int, poll_period: float | None) -> list[float]:
    """Submit ``samples`` workloads one by one; the device thread records when it got each."""
    device = world.device()
    user, _ = world.user()
    got: dict[str, float] = {}
    stop = threading.Event()

    def device_loop():
        while not stop.is_set():
            if poll_period is None:
                resp = device.next_work(wait=20)
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
    for _ in range(samples):
        if poll_period is not None:
            time.sleep(random.uniform(0, poll_period))  # land anywhere in the poll cycle
        created = user.post("/workloads", json={"DeviceId": device.id, "Priority": "HIGH"}).json()
        start = time.monotonic()
        put_file(created["UploadUrl"], b"x" * 1024)
        deadline = time.monotonic() + 30
        while created["WorkId"] not in got and time.monotonic() < deadline:
            time.sleep(0.0005)
        latencies.append(got[created["WorkId"]] - start)
    stop.set()
    return latencies


def outcome_latency(world: World, samples: int, long_poll: bool) -> list[float]:
    """A user waits on running work; the device finishes it 0..8 s later (uploads its
    results): the time from the upload's start to ``wait_until_done`` returning."""
    device = world.device()
    user, _ = world.user()
    client = QueueClient(world.service.url, ApiKeyAuth(user.token))
    if not long_poll:  # the same client, told the feature is not there: it polls
        caps = client.capabilities()
        client._capabilities = Capabilities(caps.service, caps.version,
                                            caps.features - {"workload-wait"})
    waiter = UserClient(client=client, out=None)
    latencies = []
    for _ in range(samples):
        created = user.post("/workloads", json={"DeviceId": device.id}).json()
        put_file(created["UploadUrl"], b"x" * 1024)
        assert device.next_work().json()["WorkId"] == created["WorkId"]
        returned: list[float] = []
        thread = threading.Thread(target=lambda: (waiter.wait_until_done(created["WorkId"]),
                                                  returned.append(time.monotonic())))
        thread.start()
        time.sleep(random.uniform(0, 8))  # land anywhere in the wait
        url = device.report(created["WorkId"]).json()["UploadUrl"]
        start = time.monotonic()
        put_file(url, b"results")
        thread.join(60)
        latencies.append(returned[0] - start)
    return latencies


def throughput(fn, seconds: float, threads: int) -> float:
    count = [0] * threads
    end = time.monotonic() + seconds

    def run(i):
        while time.monotonic() < end:
            fn(i)
            count[i] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    return sum(count) / seconds


def list_latency(service, world: World, rows: int) -> None:
    device = world.device()
    user, user_id = world.user()
    db = Database(service.data_dir / "queue.db")
    store = WorkloadStore(db, ServiceLimits())
    start_ms = int(time.time() * 1000) - rows * 10
    statuses = ["DONE"] * 8 + ["FAILED", "READY"]
    t0 = time.monotonic()

    def gen():
        for i in range(rows):
            owner = user_id if i % 2 == 0 else str(uuid.UUID(int=i % 50))
            yield {"work_id": str(uuid.uuid4()), "device_id": device.id, "account_id": owner,
                   "priority": "MEDIUM", "status": statuses[i % 10],
                   "created_at": start_ms + i * 10, "ready_at": start_ms + i * 10 + 1}

    store.bulk_insert(gen())
    db.close()
    print(f"  inserted {rows} workloads in {time.monotonic() - t0:.1f} s")

    def timed(api, params, n=200):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            resp = api.get("/workloads", params=params)
            out.append(time.perf_counter() - t)
            assert resp.status_code == 200, resp.text
        return out, resp.json()

    first, page = timed(world.admin, {"Limit": 5})
    print(f"  admin, newest page (5)          {ms(first)}")
    deep_key = {"WorkId": "0", "DeviceId": device.id,
                "CreatedAt": page["Items"][0]["CreatedAt"]}
    deep_key["CreatedAt"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                          time.gmtime((start_ms + rows * 5) / 1000))
    deep, _ = timed(world.admin, {"Limit": 5, "ExclusiveStartKeyJson":
                                  requests.compat.json.dumps(deep_key)})
    print(f"  admin, page in the middle (5)   {ms(deep)}")
    mine, _ = timed(user, {"Limit": 100})
    print(f"  user, own page (100)            {ms(mine)}")
    per_device, _ = timed(user, {"Limit": 5, "DeviceId": device.id})
    print(f"  user, one device (5)            {ms(per_device)}")
    ready, _ = timed(user, {"Limit": 5, "Status": "READY"})
    print(f"  user, Status=READY (5)          {ms(ready)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--poll-samples", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--wait-samples", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        service = start_queue_service(Path(tmp) / "queue")
        try:
            world = World(service)
            print("hand-out latency (upload start -> device handed the work)")
            print(f"  long poll (WaitSeconds=20)      {ms(handout_latency(world, args.samples, None))}")
            print(f"  5 s polling (original client)   "
                  f"{ms(handout_latency(world, args.poll_samples, 5.0))}")

            print("outcome latency (results upload -> the user's wait returns)")
            print(f"  workload long poll (after)      "
                  f"{ms(outcome_latency(world, args.wait_samples, True))}")
            print(f"  polling 0.5..10 s (before)      "
                  f"{ms(outcome_latency(world, args.wait_samples, False))}")

            print(f"throughput ({args.threads} client threads, keep-alive)")
            device = world.device()
            users = [world.user()[0] for _ in range(args.threads)]
            ids: list[str] = []

            def do_submit(i):
                resp = users[i].post("/workloads", json={"DeviceId": device.id,
                                                         "Priority": "LOW"})
                ids.append((i, resp.json()["WorkId"]))

            print(f"  submit  POST /workloads         "
                  f"{throughput(do_submit, args.seconds, args.threads):7.0f} req/s")
            mine = {i: [w for j, w in ids if j == i] for i in range(args.threads)}

            def do_status(i):
                users[i].get(f"/workloads/{random.choice(mine[i])}")

            print(f"  status  GET /workloads/{{id}}     "
                  f"{throughput(do_status, args.seconds, args.threads):7.0f} req/s")

            print(f"GET /workloads with {args.rows} workloads stored")
            list_latency(service, world, args.rows)
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

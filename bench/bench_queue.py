"""Benchmark of the embedded queue service. Prints figures; never asserts on time.

    .venv/bin/python bench/bench_queue.py [--samples 50] [--poll-samples 10] [--rows 100000]
                                          [--wait-samples 8]

1. hand-out latency: from the start of a workload upload to a device being handed it,
   for a long-polling device (``WaitSeconds=20``, its poll parked) and for a device that polls every 5 s
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (device_parked, handout_latency, insert_workloads,  # noqa: E402
                          list_latency, ms, submit_status_rates)
from cloudqueue.auth import ApiKeyAuth  # noqa: E402
from cloudqueue.client import Capabilities, QueueClient  # noqa: E402
from tests.conftest import start_queue_service  # noqa: E402
from tests.server.api import World, put_file  # noqa: E402
from userclient.client import UserClient  # noqa: E402


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
            parked = handout_latency(world.user()[0], world.device(), args.samples, None,
                                     parked=device_parked(service))
            print(f"  long poll (WaitSeconds=20)      {ms(parked)}")
            print(f"  5 s polling (original client)   "
                  f"{ms(handout_latency(world.user()[0], world.device(), args.poll_samples, 5))}")

            print("outcome latency (results upload -> the user's wait returns)")
            print(f"  workload long poll (after)      "
                  f"{ms(outcome_latency(world, args.wait_samples, True))}")
            print(f"  polling 0.5..10 s (before)      "
                  f"{ms(outcome_latency(world, args.wait_samples, False))}")

            print(f"throughput ({args.threads} client threads, keep-alive)")
            users = [world.user()[0] for _ in range(args.threads)]
            submits, statuses = submit_status_rates(users, world.device().id, args.seconds)
            print(f"  submit  POST /workloads         {submits:7.0f} req/s")
            print(f"  status  GET /workloads/{{id}}     {statuses:7.0f} req/s")

            print(f"GET /workloads with {args.rows} workloads stored")
            device = world.device()
            user, user_id = world.user()
            first_ms = insert_workloads(service.data_dir / "queue.db", device.id, user_id,
                                        args.rows)
            list_latency(world.admin, user, device.id, first_ms, args.rows)
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

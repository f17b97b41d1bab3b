"""``qick-queue serve`` serves /healthz and /metrics at the service root, like the board's
health endpoint: the process and its database answering, and counts for Prometheus."""
from __future__ import annotations

import requests

from queueservice.health import metrics_text
from tests.helpers import wait_for
from tests.server.api import World, status, submit


def _metrics(service) -> dict[str, float]:
    resp = requests.get(service.root + "/metrics", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in resp.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_text_is_prometheus_exposition():
    text = metrics_text(requests={"2xx": 3, "4xx": 1}, workloads={"READY": 2},
                        devices={"ONLINE": 1}, long_polls={"device": 1}, started_at=10.0,
                        version="9.9")
    assert "# TYPE qick_queue_requests_total counter" in text
    assert 'qick_queue_requests_total{code="2xx"} 3' in text
    assert 'qick_queue_requests_total{code="5xx"} 0' in text
    assert 'qick_queue_workloads{state="READY"} 2' in text
    assert 'qick_queue_workloads{state="DONE"} 0' in text
    assert 'qick_queue_devices{status="OFFLINE"} 0' in text
    assert 'qick_queue_long_polls{waiter="device"} 1' in text
    assert 'qick_queue_info{version="9.9"} 1' in text and text.endswith("\n")


def test_healthz_and_metrics_at_the_root_without_credentials(queue_service_factory,
                                                            database_options):
    service = queue_service_factory(prefix="/dev", **database_options)
    health = requests.get(service.root + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"ok": True, "detail": "alive"}
    # the operators' paths are the process's, not the API stage's
    assert requests.get(service.url + "/healthz", timeout=10).status_code in (403, 404)
    world = World(service)
    device = world.device()
    user, _ = world.user()
    ready = submit(user, device.id)
    submit(user, device.id, data=None)  # CREATED
    device.heartbeat()
    assert user.get("/workloads/not-a-work-id").status_code == 404
    m = _metrics(service)
    assert m['qick_queue_workloads{state="READY"}'] == 1
    assert m['qick_queue_workloads{state="CREATED"}'] == 1
    assert m['qick_queue_devices{status="ONLINE"}'] == 1
    assert m['qick_queue_requests_total{code="4xx"}'] >= 1
    assert m['qick_queue_requests_total{code="2xx"}'] >= 5
    # a held long poll is counted while it waits
    import threading
    poll = threading.Thread(target=lambda: user.get(f"/workloads/{ready}", params={
        "WaitSeconds": 5, "Seen": status(user, ready)["ChangeToken"]}))
    poll.start()
    wait_for(lambda: _metrics(service)['qick_queue_long_polls{waiter="workload"}'] == 1, 10,
             what="the held poll counted")
    user.post(f"/workloads/{ready}/cancel")  # ends the wait
    poll.join(10)
    wait_for(lambda: _metrics(service)['qick_queue_long_polls{waiter="workload"}'] == 0, 10,
             what="the poll gone")


def test_healthz_is_503_with_the_reason_when_the_database_does_not_answer(tmp_path):
    """The service in this process (real uvicorn, real HTTP, real SQLite), so the test can
    hold its database the way a stuck transaction would."""
    import socket
    import threading

    import uvicorn

    from queueservice.app import create_app
    from queueservice.datadir import init_data_dir
    from queueservice.health import DB_TIMEOUT_SECONDS

    init_data_dir(tmp_path / "q", port=0, admin_email="admin@localhost")
    app = create_app(tmp_path / "q")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    root = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, what="the service to start")
        assert requests.get(root + "/healthz", timeout=10).status_code == 200
        with app.state.service.workloads.db.lock:  # a transaction that does not end
            resp = requests.get(root + "/healthz", timeout=DB_TIMEOUT_SECONDS + 20)
        assert resp.status_code == 503, resp.text
        assert resp.json() == {"ok": False, "detail": "the database did not answer within "
                                                      f"{DB_TIMEOUT_SECONDS:g} s"}
        assert requests.get(root + "/healthz", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(20)

"""``qick-queue serve --access-log``: the log names every request, but never the signature
of a presigned file URL (whoever reads it could fetch or replace the file)."""
from __future__ import annotations

from tests.conftest import QueueService
from tests.helpers import wait_for
from tests.server.api import World, put_file


def test_access_log_hides_presigned_url_signatures(queue_service_factory):
    service: QueueService = queue_service_factory(access_log=True, log_level="info")
    world = World(service)
    device = world.device()
    user, _ = world.user()
    created = user.post("/workloads", json={"DeviceId": device.id}).json()
    assert "Signature=" in created["UploadUrl"]
    assert put_file(created["UploadUrl"], b"workload").status_code == 200
    assert user.get("/workloads", params={"Limit": 2}).status_code == 200
    work_id = created["WorkId"]

    def logged() -> str:
        text = service.log_path.read_text()
        return text if "GET /workloads?Limit=2" in text else ""

    text = wait_for(logged, 10, what="the access log lines")
    assert f'"PUT /files/workloads/{work_id} HTTP/1.1" 200' in text
    assert "Signature=" not in text and "Expires=" not in text

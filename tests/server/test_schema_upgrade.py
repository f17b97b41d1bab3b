"""An existing store (schema version 2, before the admin lifecycle) upgrades in place when a
new qick-queue serves it: every user, key, device, token and workload still works."""
from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import requests

from queueservice.datadir import DataDir
from queueservice.legacy import MIGRATIONS, SCHEMA_VERSION, statements
from queueservice.identities import hash_password, sha256_hex
from queueservice.tokens import Signer
from tests.conftest import QueueService
from tests.server.api import Api, assert_error, device_token, status

USER_KEY = "qk_" + "u" * 43
DEVICE_SECRET = "s" * 54
REFRESH = "r" * 64


def make_v2_store(data: Path, admin_key: str, admin_email: str) -> dict:
    """Replace the fresh store's database by one at schema version 2, holding the admin
    (same key), a user with a password, a refresh token and a second key, a device and a
    finished workload."""
    (data / "queue.db").unlink()
    for extra in ("queue.db-wal", "queue.db-shm"):
        (data / extra).unlink(missing_ok=True)
    conn = sqlite3.connect(data / "queue.db", isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:2]:
        for statement in statements(script):
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (2)")
    now = int(time.time() * 1000)
    ids = {"admin": str(uuid.uuid4()), "user": str(uuid.uuid4()), "device": str(uuid.uuid4()),
           "work": str(uuid.uuid4())}
    conn.execute("INSERT INTO users (user_id, email, full_name, groups, created_at) "
                 "VALUES (?, ?, 'Administrator', '[\"Admin\", \"AllDevices\"]', ?)",
                 (ids["admin"], admin_email, now))
    conn.execute("INSERT INTO users (user_id, email, full_name, groups, password_hash, "
                 "created_at) VALUES (?, 'old@lab.test', 'Old Timer', '[\"AllDevices\"]', ?, ?)",
                 (ids["user"], hash_password("an-old-passphrase"), now))
    for key, owner in ((admin_key, ids["admin"]), (USER_KEY, ids["user"])):
        conn.execute("INSERT INTO api_keys (key_hash, user_id, created_at) VALUES (?, ?, ?)",
                     (sha256_hex(key), owner, now))
    conn.execute("INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
                 (sha256_hex(REFRESH), ids["user"], now + 3_600_000))
    conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, created_at) "
                 "VALUES (?, 'old-board', 'oldclient', ?, ?)",
                 (ids["device"], sha256_hex(DEVICE_SECRET), now))
    # before version 3, user_given_name held the workload's own name
    conn.execute("INSERT INTO workloads (work_id, device_id, account_id, user_given_name, "
                 "priority, status, created_at, finished_at, has_workload) "
                 "VALUES (?, ?, ?, 'sweep-7', 'LOW', 'DONE', ?, ?, 1)",
                 (ids["work"], ids["device"], ids["user"], now, now))
    ids["ready"] = str(uuid.uuid4())
    conn.execute("INSERT INTO workloads (work_id, device_id, account_id, priority, status, "
                 "created_at, ready_at, has_workload) VALUES (?, ?, ?, 'HIGH', 'READY', ?, ?, 1)",
                 (ids["ready"], ids["device"], ids["user"], now, now))
    conn.close()
    return ids


def test_a_version_2_store_upgrades_in_place_with_nothing_lost(tmp_path: Path):
    service = QueueService(tmp_path / "store")
    ids = make_v2_store(service.data_dir, service.admin_key, service.admin_email)
    # a JWT issued before the upgrade (no token generation claim) stays valid
    signer = Signer(DataDir(service.data_dir).read_secret())
    old_jwt = signer.issue({"sub": ids["user"], "email": "old@lab.test",
                            "cognito:groups": ["AllDevices"], "token_use": "access"}, 600)
    service.start()
    try:
        url, root = service.url, service.root
        admin, user = Api(url, service.admin_key), Api(url, USER_KEY)
        users = {u["Email"]: u for u in admin.get("/users").json()}
        assert set(users) == {service.admin_email, "old@lab.test"}
        assert users["old@lab.test"]["Disabled"] is False
        assert users["old@lab.test"]["FullName"] == "Old Timer"
        done = status(user, ids["work"])
        assert done["WorkStatus"] == "DONE"
        # 2 -> 3: the workload's name moved to WorkloadName, UserGivenName is the submitter's
        assert (done["WorkloadName"], done["UserGivenName"]) == ("sweep-7", "Old Timer")
        listed = {w["WorkId"]: w for w in user.get("/workloads").json()["Items"]}
        assert listed[ids["work"]]["WorkloadName"] == "sweep-7"
        assert listed[ids["ready"]]["UserGivenName"] == "Old Timer"
        # 4 -> 5: work queued before has no estimate of its own, and is first in line
        ready = status(user, ids["ready"])
        assert ready["QueuePosition"] == 1 and "EstimatedSeconds" not in ready
        assert Api(url, old_jwt).get("/devices").status_code == 200
        keys = user.get("/api-keys").json()
        assert len(keys) == 1 and len(keys[0]["KeyId"]) == 16 and keys[0]["Label"] is None
        assert admin.get("/api-keys").json()[0]["KeyId"] != keys[0]["KeyId"]
        board = Api(url, device_token(root, "oldclient", DEVICE_SECRET))
        assert board.put(f"/devices/{ids['device']}", json={
            "DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json"}
        ).status_code == 200
        refreshed = requests.post(root + "/", timeout=10, json={
            "AuthFlow": "REFRESH_TOKEN_AUTH", "AuthParameters": {"REFRESH_TOKEN": REFRESH}},
            headers={"X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
                     "Content-Type": "application/x-amz-json-1.1"})
        assert refreshed.status_code == 200, refreshed.text
        # the new operations work on the old rows
        assert user.post(f"/api-keys/{keys[0]['KeyId']}/revoke").status_code == 200
        assert_error(user.get("/devices"), 403)
        assert admin.post(f"/users/{ids['user']}/disable").status_code == 200
        assert_error(Api(url, old_jwt).get("/devices"), 403)
        assert admin.post(f"/devices/{ids['device']}/rotate-secret").status_code == 200
        assert_error(board.get(f"/devices/{ids['device']}/workload"), 403)
    finally:
        service.stop()
    conn = sqlite3.connect(service.data_dir / "queue.db")
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM api_keys WHERE key_id IS NULL").fetchone()[0] == 0
    conn.close()

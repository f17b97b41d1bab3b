"""The data folder of one service: ``queue.db``, ``files/``, ``secret`` and ``admin.conf``;
the state in a PostgreSQL database instead of ``queue.db`` when ``database`` is a URL."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cloudqueue.cognito import OUR_SERVICE_CLIENT_ID, OUR_SERVICE_USER_POOL
from cloudqueue.errors import ConfigError
from queueservice.clock import now_ms
from queueservice.db import Database
from queueservice.files import LocalFiles
from queueservice.identities import IdentityStore
from qickbase.atomicfile import atomic_write


@dataclass(frozen=True)
class DataDir:
    root: Path
    database: str | None = None  # a postgresql:// URL; None: queue.db in the folder

    @property
    def db_path(self) -> Path:
        return self.root / "queue.db"

    @property
    def database_target(self) -> Path | str:
        """What ``Database`` opens: the URL, else the SQLite file."""
        return self.database or self.db_path

    @property
    def files_path(self) -> Path:
        return self.root / "files"

    @property
    def secret_path(self) -> Path:
        return self.root / "secret"

    @property
    def admin_conf(self) -> Path:
        return self.root / "admin.conf"

    def exists(self) -> bool:
        return self.db_path.exists() or self.secret_path.exists()

    def read_secret(self) -> bytes:
        if not self.secret_path.exists() or (self.database is None
                                             and not self.db_path.exists()):
            raise ConfigError(f"{self.root} is not a qick-queue data folder: create one with "
                              f"`qick-queue init --data {self.root}`")
        secret = bytes.fromhex(self.secret_path.read_text().strip())
        if len(secret) < 32:
            raise ConfigError(f"the secret in {self.secret_path} is too short: it is damaged")
        return secret


@dataclass(frozen=True)
class InitResult:
    admin_conf: Path
    admin_email: str
    admin_key: str
    url: str = ""        # the service URL written into admin.conf


def public_service_url(url: str) -> str:
    """A ``--public-url`` checked and normalized (no final ``/``); ConfigError when it is
    not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise ConfigError(f"--public-url {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--public-url {url!r}: give an http:// or https:// URL with a "
                          "host, e.g. http://queue.lab.example.org:8080")
    if parts.query or parts.fragment:
        raise ConfigError(f"--public-url {url!r}: no query or fragment; give the service "
                          "root (with its path prefix, if a proxy adds one)")
    return parts.geturl().rstrip("/")


def init_data_dir(root: Path, *, port: int, admin_email: str,
                  host: str = "127.0.0.1", public_url: str | None = None,
                  database: str | None = None) -> InitResult:
    """Create the store, the signing secret and the first admin; refuse an existing store.

    admin.conf points at ``public_url`` when given (what boards and people reach), else at
    ``http://host:port`` (this machine only)."""
    url = public_service_url(public_url) if public_url else f"http://{host}:{port}"
    data = DataDir(Path(root), database)
    if data.exists():
        raise ConfigError(f"{data.root} already holds a qick-queue store; refusing to overwrite "
                          f"it. Serve it with `qick-queue serve --data {data.root}`, or choose "
                          f"an empty folder")
    if "@" not in admin_email:
        raise ConfigError(f"--admin-email {admin_email!r} is not an e-mail address")
    data.root.mkdir(parents=True, exist_ok=True)
    data.root.chmod(0o700)  # the database holds password and key hashes
    LocalFiles(data.files_path).create()
    atomic_write(data.secret_path, secrets.token_hex(32) + "\n")
    db = Database(data.database_target)
    try:
        with db.reading() as conn:
            if conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]:
                raise ConfigError(f"the database {db.describe()} already holds a qick-queue "
                                  "store: serve it, or give an empty database")
        _, api_key, _ = IdentityStore(db).add_user(
            admin_email, "Administrator", ["Admin", "AllDevices"], now_ms(),
            with_password=False)
    finally:
        db.close()
    atomic_write(data.admin_conf,
                 "# qick-queue admin: a ready userclient config (keep it private)\n"
                 "[service]\n"
                 f"api_endpoint = {url}\n"
                 "# devices get their tokens here, the original user client logs in here\n"
                 f"oauth_endpoint = {url}\n"
                 f"cognito_url = {url}\n"
                 "# one user pool on this service: any values do, the original client reads them\n"
                 f"clientid = {OUR_SERVICE_CLIENT_ID}\n"
                 f"cognito_userpool = {OUR_SERVICE_USER_POOL}\n\n"
                 "[user]\n"
                 f"username = {admin_email}\n"
                 f"api_key = {api_key}\n")
    return InitResult(data.admin_conf, admin_email, api_key, url)


#: the name under which the database keeps the fingerprint of the replicas' secret
SECRET_FINGERPRINT = "secret_fingerprint"


def check_shared_secret(db: Database, secret: bytes, data: DataDir) -> None:
    """Replicas sign and check tokens and file URLs with one secret, each from its own data
    folder: the database keeps a fingerprint of the first one's (an HMAC of a constant,
    never the secret), and a replica with another secret is refused at start, saying what
    to do (a token it signed would be refused by every other replica)."""
    fingerprint = hmac.new(secret, b"qick-queue shared secret", hashlib.sha256).hexdigest()
    with db.transaction() as conn:
        conn.execute("INSERT INTO service_settings (name, value) VALUES (?, ?) "
                     "ON CONFLICT (name) DO NOTHING", (SECRET_FINGERPRINT, fingerprint))
        kept = conn.execute("SELECT value FROM service_settings WHERE name = ?",
                            (SECRET_FINGERPRINT,)).fetchone()[0]
    if not hmac.compare_digest(kept, fingerprint):
        raise ConfigError(
            f"{data.secret_path} is not the secret the other replicas of this database use: "
            "copy the secret file of the data folder made by `qick-queue init` into this "
            "replica's data folder (mode 0600), then start it again")

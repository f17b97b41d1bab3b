"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries (initdb, pg_ctl),
a cluster in a temporary directory, run as an unprivileged user (``nobody`` when the tests
run as root: PostgreSQL refuses root), listening only on a unix socket in that directory.
Missing binaries: skipped on a developer's machine, a failure in CI (``CI`` set), where a
skip would hide the PostgreSQL runs."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

#: where Debian's package puts the binaries (newest first), then the PATH
SEARCH = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    for folder in SEARCH:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


class PostgresServer:
    """One cluster: ``start()``, ``url(database)``, ``create_database()``, ``stop()``."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="qq-pg-"))  # short: the socket path
        self.data = self.root / "data"
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        self.resume()

    def crash(self) -> None:
        """Stop the server at once, as a crash or a lost network would (``resume`` brings
        it back with its data)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = f"-k {self.root} -c listen_addresses='' -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def create_database(self) -> str:
        """A new empty database; answers its URL."""
        import psycopg  # the postgres extra: present wherever the binaries are used
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.root), user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def unavailable(why: str) -> None:
    """Skip, or fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)

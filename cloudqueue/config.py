"""The INI configuration of the original SideQICK clients, plus our few additions.

Files (the first that exists wins, unless a path is given):

- config: ``$QICK_CONFIG``, ``~/.config/qick.conf``, ``/etc/qick/config`` (a
  ``$QICK_CONFIG`` that names no file is an error, not a fall back to the others)
- credentials (the board's secret): ``$QICK_CREDENTIALS``, ``/etc/qick/credentials``

Sections and keys (``*`` = ours, optional)::

    [service]  cognito_userpool, cognito_url, clientid, oauth_endpoint, api_endpoint, region*
    [user]     username, api_key*, token_cache*
    [device]   id, name
    [credentials]  id, secret          (in the credentials file)

Reading never fails on a missing key; ``Config.require`` does, with a ConfigError that
names the file and the key, so the message says exactly what to add where.
"""
from __future__ import annotations

import configparser
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cloudqueue.errors import ConfigError
from qickbase.atomicfile import atomic_write

USER_CONFIG = Path("~/.config/qick.conf")
SYSTEM_CONFIG = Path("/etc/qick/config")
SYSTEM_CREDENTIALS = Path("/etc/qick/credentials")


def config_candidates() -> list[Path]:
    """Where the config file is looked for, in order."""
    env = os.environ.get("QICK_CONFIG")
    if env:
        return [Path(env).expanduser()]
    return [USER_CONFIG.expanduser(), SYSTEM_CONFIG]


def credentials_candidates() -> list[Path]:
    env = os.environ.get("QICK_CREDENTIALS")
    if env:
        return [Path(env).expanduser()]
    return [SYSTEM_CREDENTIALS]


@dataclass
class Config:
    """The merged config and credentials. ``path``/``credentials_path`` are None when absent."""

    path: Path | None
    credentials_path: Path | None
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        value = self.values.get(section, {}).get(key)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def require(self, section: str, key: str) -> str:
        value = self.get(section, key)
        if value is not None:
            return value
        where = self.credentials_path if section == "credentials" else self.path
        if where is None:
            raise self.no_file_error(section == "credentials")
        raise ConfigError(f"{where}: key `{key}` is missing in section [{section}]; add it "
                          f"(see etc/config.template)", kind="config_key_missing")

    def no_file_error(self, credentials: bool = False) -> ConfigError:
        """The error for "no config (or credentials) file at all", naming where it looked."""
        tried = credentials_candidates() if credentials else config_candidates()
        names = ", ".join(str(p) for p in tried)
        if credentials:
            return ConfigError(f"no credentials file found (looked for {names}); create one "
                               "from etc/credentials.template", kind="config_missing")
        return ConfigError(f"no config file found (looked for {names}); run `userclient "
                           "configure --api-endpoint URL` (or create one from "
                           "etc/config.template)", kind="config_missing")

    # Convenience accessors for the keys the clients use.
    @property
    def api_endpoint(self) -> str:
        return self.require("service", "api_endpoint")

    @property
    def oauth_endpoint(self) -> str:
        return self.require("service", "oauth_endpoint")

    @property
    def device_id(self) -> str:
        return self.require("device", "id")


def read_ini(path: Path) -> dict[str, dict[str, str]]:
    """The sections of one INI file as plain dicts (ConfigError when unreadable)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except PermissionError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); check its permissions",
                          kind="config_unreadable") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not a valid INI file ({first}); compare it with "
                          f"etc/config.template", kind="config_invalid") from None
    return {section: dict(parser[section]) for section in parser.sections()}


def _first_existing(candidates: list[Path]) -> Path | None:
    for path in candidates:
        if path.is_file():
            return path
    return None


def load_config(path: str | os.PathLike | None = None,
                credentials_path: str | os.PathLike | None = None) -> Config:
    """Read the config (and credentials, if any). An explicit path must exist.

    Without one (and without ``QICK_CONFIG``), both ``~/.config/qick.conf`` and
    ``/etc/qick/config`` are read, as the original client's ``ConfigParser.read`` does: a key
    in the later file wins. ``Config.path`` is the first of them that exists."""
    if path is not None:
        config_path: Path | None = Path(path).expanduser()
        if not config_path.is_file():
            raise ConfigError(f"{config_path}: no such config file; check the path or run "
                              f"`userclient configure --config {config_path}`",
                              kind="config_missing")
        files = [config_path]
    else:
        env = os.environ.get("QICK_CONFIG")
        if env and not Path(env).expanduser().is_file():
            raise ConfigError(f"QICK_CONFIG names {env}, which is not a file: fix or unset "
                              f"QICK_CONFIG, or create it with `userclient configure`",
                              kind="config_missing")
        files = [p for p in config_candidates() if p.is_file()]
        config_path = files[0] if files else None
    if credentials_path is not None:
        creds_path: Path | None = Path(credentials_path).expanduser()
        if not creds_path.is_file():
            raise ConfigError(f"{creds_path}: no such credentials file; check the path",
                              kind="config_missing")
    else:
        creds_path = _first_existing(credentials_candidates())
    values: dict[str, dict[str, str]] = {}
    for file in files:
        for section, keys in read_ini(file).items():
            values.setdefault(section, {}).update(keys)
    if creds_path is not None:
        creds = read_ini(creds_path)
        if "credentials" in creds:
            values["credentials"] = creds["credentials"]
    return Config(config_path, creds_path, values)


def render_ini(sections: dict[str, dict[str, str | None]]) -> str:
    """INI text for ``sections`` (keys with a None value are left out)."""
    parser = configparser.ConfigParser(interpolation=None)
    for section, keys in sections.items():
        parser[section] = {k: str(v) for k, v in keys.items() if v is not None}
    from io import StringIO
    out = StringIO()
    parser.write(out)
    return out.getvalue()


def exposed_secret(config: Config) -> str | None:
    """A warning when the config file in use holds an API key and others may read it."""
    if config.path is None or not config.get("user", "api_key"):
        return None
    try:
        mode = config.path.stat().st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o044:
        return None
    who = {0o044: "its group and others", 0o040: "its group", 0o004: "others"}[mode & 0o044]
    return (f"{config.path} holds an API key and is readable by {who} (mode {mode:04o}): "
            f"run chmod 600 {config.path}")


def loopback_host(url: str | None) -> str | None:
    """The host of ``url`` when it is a loopback address (127.x, ::1, localhost), else None:
    a board on another machine cannot reach a service there."""
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def cannot_write(path: str | os.PathLike) -> str | None:
    """Why ``write_atomically(path, ...)`` would fail, or None when it should work.

    Checked before something that cannot be repeated (a device's one-time secret): the
    target must not be a directory, and its nearest existing folder (``write_atomically``
    creates the missing ones) must be a folder this process may write in."""
    target = Path(path).expanduser()
    if target.is_dir():
        return "is a directory: give a file name"
    if target.exists() and not target.is_file():
        return "exists and is not a regular file"
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder} (permission denied)"
    return None


def write_atomically(path: str | os.PathLike, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` (``~`` expanded, missing folders created) atomically;
    the file has ``mode`` from its first byte (``qickbase.atomicfile.atomic_write``)."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text, mode=mode)

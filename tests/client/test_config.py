"""Config files: where they are found, what a missing key says, and private files' mode."""
from __future__ import annotations

import os
import stat

import pytest

from cloudqueue.config import load_config, render_ini, write_atomically
from cloudqueue.errors import ConfigError

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10


def write(path, text):
    path.write_text(text)
    return path


def test_qick_config_env_points_to_the_file_and_keys_are_read(tmp_path, monkeypatch):
    conf = write(tmp_path / "c.conf", "[service]\napi_endpoint = http://h/dev\n"
                                      "[user]\nusername = ada@example.org\n")
    creds = tmp_path / "creds"
    write_atomically(creds, "[credentials]\nid = cid\nsecret = s3\n")
    monkeypatch.setenv("QICK_CONFIG", str(conf))
    monkeypatch.setenv("QICK_CREDENTIALS", str(creds))
    config = load_config()
    assert config.path == conf and config.credentials_path == creds
    assert config.api_endpoint == "http://h/dev"
    assert config.get("user", "username") == "ada@example.org"
    assert config.require("credentials", "secret") == "s3"


def test_missing_key_names_the_file_section_and_key(tmp_path):
    conf = write(tmp_path / "c.conf", "[service]\napi_endpoint = http://h\n")
    config = load_config(conf)
    with pytest.raises(ConfigError) as err:
        config.require("device", "id")
    assert str(conf) in str(err.value) and "`id`" in str(err.value)
    assert "[device]" in str(err.value)


@pytest.mark.skipif(os.path.exists("/etc/qick/config"), reason="this machine has one")
def test_no_config_file_anywhere_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("QICK_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config()
    assert config.path is None
    with pytest.raises(ConfigError) as err:
        config.require("service", "api_endpoint")
    message = str(err.value)
    assert str(tmp_path / ".config" / "qick.conf") in message
    assert "/etc/qick/config" in message and "userclient configure" in message


def test_both_default_files_are_read_as_the_original_reads_them(tmp_path, monkeypatch):
    """Without QICK_CONFIG, ~/.config/qick.conf and /etc/qick/config are both read, as the
    original client's ConfigParser.read does: a key in the later (system) file wins."""
    import cloudqueue.config as config_module
    monkeypatch.delenv("QICK_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config").mkdir()
    mine = write(tmp_path / ".config" / "qick.conf",
                 "[service]\napi_endpoint = http://mine/dev\n[user]\nusername = ada@lab.org\n")
    system = write(tmp_path / "etc-qick-config",
                   "[service]\napi_endpoint = http://board/dev\n[device]\nid = dev-1\n")
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    config = load_config()
    assert config.path == mine
    assert config.get("user", "username") == "ada@lab.org"
    assert config.device_id == "dev-1"
    assert config.api_endpoint == "http://board/dev"
    mine.unlink()
    assert load_config().path == system and load_config().device_id == "dev-1"


def test_qick_config_naming_a_missing_file_is_an_error_not_a_fallback(tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config").mkdir()
    write(tmp_path / ".config" / "qick.conf", "[service]\napi_endpoint = http://h\n")
    monkeypatch.setenv("QICK_CONFIG", str(tmp_path / "absent.conf"))
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "QICK_CONFIG names" in str(err.value) and "absent.conf" in str(err.value)
    monkeypatch.delenv("QICK_CONFIG")
    assert load_config().path == tmp_path / ".config" / "qick.conf"


def test_a_key_in_a_file_others_can_read_is_warned_about(tmp_path):
    from cloudqueue.config import exposed_secret
    conf = write(tmp_path / "c.conf", "[service]\napi_endpoint = http://h\n"
                                      "[user]\napi_key = qk_secret\n")
    conf.chmod(0o644)
    warning = exposed_secret(load_config(conf))
    assert warning and f"chmod 600 {conf}" in warning and "group and others" in warning
    assert "qk_secret" not in warning
    conf.chmod(0o640)
    assert "readable by its group (mode 0640)" in exposed_secret(load_config(conf))
    conf.chmod(0o600)
    assert exposed_secret(load_config(conf)) is None
    keyless = write(tmp_path / "k.conf", "[service]\napi_endpoint = http://h\n")
    keyless.chmod(0o644)
    assert exposed_secret(load_config(keyless)) is None


def test_explicit_missing_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.conf")


def test_a_broken_ini_file_is_a_config_error_not_a_traceback(tmp_path):
    conf = write(tmp_path / "c.conf", "this is not ini\n")
    with pytest.raises(ConfigError, match="not a valid INI file"):
        load_config(conf)


def test_empty_values_count_as_missing(tmp_path):
    config = load_config(write(tmp_path / "c.conf", "[service]\napi_endpoint =\n"))
    with pytest.raises(ConfigError, match="api_endpoint"):
        config.api_endpoint


def test_write_atomically_creates_0600_and_render_round_trips(tmp_path):
    target = tmp_path / "sub" / "credentials"
    write_atomically(target, render_ini({"credentials": {"id": "a", "secret": "b", "x": None}}))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    config = load_config(write(tmp_path / "c.conf", "[service]\n"), credentials_path=target)
    assert config.require("credentials", "secret") == "b"
    assert config.get("credentials", "x") is None
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_templates_parse_and_carry_every_original_key():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "etc")
    config = load_config(os.path.join(root, "config.template"),
                         credentials_path=os.path.join(root, "credentials.template"))
    for section, keys in {"service": ["cognito_userpool", "cognito_url", "clientid",
                                      "oauth_endpoint", "api_endpoint"],
                          "user": ["username"], "device": ["id", "name"]}.items():
        for key in keys:
            assert key in config.values[section], (section, key)
    assert set(config.values["credentials"]) >= {"id", "secret"}

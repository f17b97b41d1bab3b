"""CLI pieces that need no service: configure, the exit-code table, the wait display."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

import pytest

from cloudqueue import errors
from cloudqueue.config import load_config, write_atomically
from cloudqueue.models import Workload
from userclient.cli import exit_code_for
from userclient.errors import WaitTimeout
from userclient.display import WaitDisplay, progress_line


def cli(*args, stdin="", env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QICK_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "userclient.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_configure_writes_a_0600_config_with_the_key_from_stdin_and_merges(tmp_path):
    conf = tmp_path / "cfg" / "qick.conf"
    done = cli("configure", "--config", str(conf), "--api-endpoint", "http://q:8080/dev",
               "--api-key-stdin", "--no-check", stdin="qk_secret\n")  # no service here
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    assert "qk_secret" not in done.stdout + done.stderr
    again = cli("configure", "--config", str(conf), "--oauth-endpoint", "http://q:8080",
                "--no-check")
    assert again.returncode == 0, again.stderr
    config = load_config(conf)
    assert config.api_endpoint == "http://q:8080/dev"
    assert config.oauth_endpoint == "http://q:8080"
    assert config.get("user", "api_key") == "qk_secret"


def test_configure_without_an_endpoint_is_a_usage_error(tmp_path):
    done = cli("configure", "--config", str(tmp_path / "c"))
    assert done.returncode == 2 and "--api-endpoint" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "c").exists()


def test_no_command_prints_help_and_exits_2():
    done = cli()
    assert done.returncode == 2 and "Exit codes" in done.stderr


@pytest.mark.parametrize("error,code", [
    (errors.ConfigError("x"), 2), (errors.BadRequest("x"), 2),
    (errors.ChecksumMismatch("x"), 2), (errors.AuthError("x"), 3), (errors.Forbidden("x"), 3),
    (errors.NotFound("x"), 4), (errors.ServiceUnavailable("x"), 5),
    (errors.NotSupported("x"), 6), (errors.Conflict("x"), 7), (WaitTimeout("x"), 8),
    (errors.QueueError("x"), 10)])
def test_exit_code_table(error, code):
    assert exit_code_for(error) == code


def test_wait_display_rewrites_one_line_on_a_tty_and_prints_changes_otherwise():
    ready = Workload.from_json({"WorkId": "w", "WorkStatus": "READY", "QueuePosition": 2})
    done = Workload.from_json({"WorkId": "w", "WorkStatus": "DONE"})
    tty = io.StringIO()
    display = WaitDisplay(tty, tty=True)
    for work in (ready, ready, done):
        display.update(work, 3)
    display.close()
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n")
    assert "position 2" in tty.getvalue()
    log = io.StringIO()
    display = WaitDisplay(log, tty=False)
    for work in (ready, ready, done):
        display.update(work, 3)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "READY  position 2" in lines[0] and "DONE" in lines[1]


def test_configure_never_copies_the_board_credentials_into_the_user_config(tmp_path):
    creds = tmp_path / "credentials"
    write_atomically(creds, "[credentials]\nid = board\nsecret = board-secret\n")
    conf = tmp_path / "qick.conf"
    conf.write_text("[service]\napi_endpoint = http://q/dev\n")
    done = cli("configure", "--config", str(conf), "--username", "ada@example.org",
               "--no-check", env_extra={"QICK_CREDENTIALS": str(creds)})
    assert done.returncode == 0, done.stderr
    assert "board-secret" not in conf.read_text()
    assert load_config(conf, credentials_path=None).get("user", "username") == "ada@example.org"


def test_wait_display_shows_a_progress_bar_on_a_tty_and_a_line_per_step_otherwise():
    def running(done):
        return Workload.from_json({"WorkId": "w", "WorkStatus": "EXECUTING", "QueuePosition": 0,
                                   "Progress": {"ProgramsDone": done, "ProgramsTotal": 201}})
    tty = io.StringIO()
    display = WaitDisplay(tty, tty=True)
    for done in (0, 120, 120):
        display.update(running(done), 5)
    display.close()
    assert "EXECUTING  [###########---------] 120/201 programs  (waited 5s)" in tty.getvalue()
    assert "[--------------------] 0/201 programs" in tty.getvalue()
    log = io.StringIO()
    display = WaitDisplay(log, tty=False)
    for done in (0, 0, 120, 120, 201):
        display.update(running(done), 5)
    lines = log.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines] == [
        "0/201 programs", "120/201 programs", "201/201 programs"]
    assert "[" not in log.getvalue()  # no bar in logs


def test_wait_display_repeats_no_line_for_a_field_the_line_does_not_show():
    """Between the report and the results, a long poll may answer UPLOADING twice with only
    the queue position changed (0, then none): the line shows no position while it runs,
    so a log gets one UPLOADING line."""
    def uploading(position):
        return Workload.from_json({"WorkId": "w", "WorkStatus": "UPLOADING",
                                   "QueuePosition": position,
                                   "Progress": {"ProgramsDone": 2, "ProgramsTotal": 3}})
    log = io.StringIO()
    display = WaitDisplay(log, tty=False)
    for work in (uploading(0), uploading(None), uploading(None)):
        display.update(work, 5)
    assert [line.split(" ", 1)[1] for line in log.getvalue().splitlines()] == [
        "UPLOADING  2/3 programs  (waited 5s)"]


def test_workload_without_sane_progress_shows_none():
    for progress in (None, {"ProgramsDone": 1}, {"ProgramsDone": 1, "ProgramsTotal": 0}, "x"):
        work = Workload.from_json({"WorkId": "w", "WorkStatus": "EXECUTING",
                                   "Progress": progress})
        assert work.programs is None
        assert "programs" not in progress_line(work, 1)


@pytest.mark.parametrize("command", [
    ["configure", "--api-endpoint", "http://127.0.0.1:9/dev", "--no-check", "--config"],
    ["device", "some-device", "--save-soccfg"],
    ["results", "some-work", "-o"]])
@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_unwritable_output_path_is_one_line_and_exit_2(tmp_path, command, where):
    """Regression: `configure --config DIR` printed an IsADirectoryError traceback; the
    same paths of `device --save-soccfg` and `results -o` are refused before any request
    (the config's service does not even exist)."""
    conf = tmp_path / "user.conf"
    conf.write_text("[service]\napi_endpoint = http://127.0.0.1:9/dev\n"
                    "[user]\napi_key = qk_x\n")
    conf.chmod(0o600)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("")
    target = tmp_path / ("folder" if where == "a folder" else "a-file/out")
    args = command + [str(target)]
    if command[0] != "configure":
        args = ["--config", str(conf)] + args
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert f"{target}: " in done.stderr and "nothing was written" in done.stderr
    assert (tmp_path / "a-file").read_text() == ""


def test_configure_asks_for_the_api_key_without_echo_on_a_terminal(tmp_path):
    """Regression: ``--api-key-stdin`` on a terminal read the key as a line, echoed on the
    screen (and in the scrollback)."""
    from tests.client.test_login import on_terminal
    conf = tmp_path / "qick.conf"
    code, out = on_terminal(["configure", "--config", str(conf), "--api-endpoint",
                             "http://q:8080/dev", "--api-key-stdin", "--no-check"],
                            [(b"API key: ", "qk_typed_secret")])
    assert code == 0, out
    assert b"qk_typed_secret" not in out
    assert load_config(conf).get("user", "api_key") == "qk_typed_secret"

"""Settings parsing (with clear errors), the template parses, and the health endpoint and
`qick-supervisor status` against a real daemon."""
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from boardcore.childstart import ChildStart, child_parser, child_settings
from boardcore.errors import BoardConfigError
from boardcore.settings import (SECTIONS, SETTINGS, BoardSettings, load_settings,
                                render_template, template_board_part)

pytestmark = pytest.mark.device310  # device-side code: also run under the board's Python 3.10

ROOT = Path(__file__).resolve().parents[2]


def test_the_template_parses_with_its_documented_defaults():
    s = load_settings(ROOT / "etc" / "config.template")
    assert s.health == ("127.0.0.1", 8787) and s.board == "qick"
    assert s.restart_max == 5 and s.deadline_seconds == 3600


def test_the_committed_template_is_the_rendering_of_the_declarations():
    """etc/config.template's board part is generated (python -m boardcore.settings
    etc/config.template): it can never drift from the declarations."""
    committed = template_board_part((ROOT / "etc" / "config.template").read_text())
    assert committed == render_template(), (
        "etc/config.template's board sections differ from boardcore.settings.SETTINGS; run "
        "`python -m boardcore.settings etc/config.template`")


def test_every_declared_key_is_in_the_template_with_its_doc_and_parses_to_its_default():
    text = render_template()
    for setting in SETTINGS:
        assert setting.section in SECTIONS and setting.doc
        assert f"\n{setting.name} =" in text
    defaults = BoardSettings()
    parsed = load_settings(ROOT / "etc" / "config.template")
    assert parsed == defaults  # the template writes the defaults (empty: computed)
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)  # each key declared once


def test_settings_refuse_a_name_that_is_not_declared():
    with pytest.raises(TypeError, match="unknown settings: retry_forever"):
        BoardSettings(retry_forever=True)


def test_a_child_reads_the_same_settings_from_the_same_file(tmp_path):
    """The supervisor gives a child only what is not in the config (boardcore.childstart);
    the child loads the rest through the one loader and sees what its parent sees."""
    path = tmp_path / "config"
    path.write_text("[supervisor]\nheartbeat_seconds = 0.25\nlong_poll_seconds = 3\n"
                    "[executor]\nboard = simulated\nseed = 7\nnetwork_isolation = no\n"
                    "[uploader]\nscan_seconds = 0.5\n")
    parent = load_settings(path)
    parent.spool, parent.run_dir = tmp_path / "spool", tmp_path / "run"  # computed by it
    start = ChildStart(bus="ipc:///tmp/x", parent=1, config=str(path), credentials=None,
                       spool=str(parent.spool), run_dir=str(parent.run_dir))
    args = child_parser("child", "a child").parse_args(start.argv())
    assert child_settings(args) == parent
    assert "--credentials" not in start.argv() and args.bus == "ipc:///tmp/x"
    assert child_settings(args).board_lock == tmp_path / "run" / "board.lock"


def test_a_config_without_executor_section_means_the_real_board(tmp_path):
    """Regression: a board config without [executor] silently ran a simulated board."""
    path = tmp_path / "config"
    path.write_text("[service]\napi_endpoint = http://127.0.0.1:9\n")
    assert load_settings(path).board == "qick"
    assert load_settings(None).board == "qick"


@pytest.mark.parametrize("text,words", [
    ("[executor]\nboard = fpga\n", "use `qick`"),
    ("[supervisor]\nrestart_max = many\n", "`restart_max = many` is not valid"),
    ("[uploader]\nretry_forever = yes\n", "unknown key `retry_forever`"),
    ("[uploader]\nboard = simulated\n", "unknown key `board`; known keys: "
                                           "retry_base_seconds, retry_max_seconds, scan_seconds"),
    ("[executor]\nnetwork_isolation = maybe\n", "`network_isolation = maybe` is not valid"),
    ("[supervisor]\nhealth = localhost:http\n", "`health = localhost:http` is not valid"),
    # regression: the daemon died with a ValueError traceback at start
    ("[supervisor]\nrestart_max = 0\n", "restart_max must be at least 1"),
])
def test_bad_settings_say_what_to_fix(tmp_path, text, words):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(BoardConfigError, match=words):
        load_settings(path)


def test_missing_credentials_is_a_clear_error_without_traceback(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("[service]\napi_endpoint = http://127.0.0.1:9\noauth_endpoint = "
                   "http://127.0.0.1:9\n[device]\nid = x\n")
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "--config", str(cfg),
                          "--credentials", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no such credentials file" in out.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_credentials_file_others_may_read_is_refused_at_start(tmp_path, mode):
    cfg = tmp_path / "config"
    cfg.write_text("[service]\napi_endpoint = http://127.0.0.1:9\noauth_endpoint = "
                   "http://127.0.0.1:9\n[device]\nid = x\n[supervisor]\nhealth = 127.0.0.1:0\n")
    creds = tmp_path / "credentials"
    creds.write_text("[credentials]\nid = board\nsecret = board-secret\n")
    os.chmod(creds, mode)
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "--config", str(cfg),
                          "--credentials", str(creds)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert f"{creds}: mode {mode:04o} lets other users read" in out.stderr
    assert f"chmod 600 {creds}" in out.stderr
    assert "board-secret" not in out.stderr + out.stdout
    assert "health on" not in out.stderr  # refused before anything started


def test_health_endpoints_and_status_command(board_factory):
    board = board_factory().start()
    assert board.get("/healthz")[0] == 200
    assert board.get("/readyz")[0] == 200
    status = board.status()
    assert set(status["children"]) == {"downloader", "executor", "uploader"}
    assert status["firmware"]["board"] and status["queue"]["last_ok_at"]
    code, metrics = board.get("/metrics")
    assert 'qick_child_up{child="executor"} 1' in metrics
    # a simulated board says so: /status, /metrics, the startup log, `status`
    assert status["simulated"] is True
    assert "qick_board_simulated 1" in metrics
    assert "SIMULATED board" in board.log() and "board = qick" in board.log()
    assert "# TYPE qick_spool_depth gauge" in metrics
    with pytest.raises(urllib.error.HTTPError):
        board.get("/nope")
    cfg = board.config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{board.port}")
    (board.base / "status.conf").write_text(cfg)
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "--config",
                          str(board.base / "status.conf"), "status"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "board: ONLINE" in out.stdout and "executor" in out.stdout
    assert "SIMULATED board" in out.stdout.splitlines()[0]
    assert "queue: reachable" in out.stdout
    # the options may also follow the subcommand, as people type them
    after = subprocess.run([sys.executable, "-m", "supervisor.cli", "status", "--config",
                            str(board.base / "status.conf")], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
    assert after.returncode == 0 and "board: ONLINE" in after.stdout, after.stderr


def test_status_with_the_health_endpoint_off_says_so(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("[supervisor]\nhealth =\n")
    assert load_settings(cfg).health_enabled is False
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "status", "--config",
                          str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "health endpoint is off ([supervisor] health is empty)" in out.stderr

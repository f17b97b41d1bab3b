"""``qick-supervisor install-service``: ``qick.service`` and its environment file for this
machine.

- The command: the ``qick-supervisor`` script pip put beside the running interpreter (PYNQ 3:
  ``/usr/local/share/pynq-venv/bin/qick-supervisor``), else ``<that python> -m
  supervisor.cli``. Either way the unit runs the environment the admin ran this from; the
  interpreter's path is kept as given (a venv's ``bin/python`` is a symlink out of the venv).
- PYNQ's state folder: ``pynq/pl_server`` of the ``pynq`` that interpreter would import, found
  with ``find_spec`` (``pynq`` itself is not imported: that needs the board).
- The environment: the original start script sourced ``/etc/environment`` and
  ``/etc/profile.d/*.sh``. The unit reads ``/etc/environment`` itself
  (``EnvironmentFile=``); what the profile scripts set or changed on top of it is captured
  here, once, by one ``env -i bash`` that sources them and prints its environment, and written
  to ``/etc/qick/board.env``. No shell runs in the daemon's process.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from boardcore.errors import InstallError, ReloadFailed
from cloudqueue.config import cannot_write
from qickbase.atomicfile import atomic_write
from supervisor import boardaccess
from supervisor.childenv import SECRET_NAME

DEFAULT_UNIT_PATH = "/etc/systemd/system/qick.service"

# Set by bash itself or only meaningful to an interactive shell: never part of the daemon's
# environment. Exported shell functions (BASH_FUNC_*) are dropped too.
SHELL_INTERNAL = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "PS4",
                            "PROMPT_COMMAND", "VIRTUAL_ENV_PROMPT", "HISTFILE", "HISTSIZE",
                            "HISTFILESIZE", "HISTCONTROL", "TERM", "COLUMNS", "LINES", "MAIL",
                            "LS_COLORS"})

# Run by ``bash --noprofile --norc -c`` with an empty environment; $1 is the /etc root.
# Prints: the environment after /etc/environment, NUL, the environment after the profile
# scripts, NUL, and the script that exited the shell (empty when none did). Scripts' own
# output goes nowhere; a failing script does not stop the others (as in a login shell).
_CAPTURE = r"""
etc=$1
if [ -r "$etc/environment" ]; then
  set -a; . "$etc/environment" </dev/null >/dev/null 2>&1; set +a
fi
env -0
printf '\0'
__qick_at=
trap 'env -0; printf "\0%s" "$__qick_at"' EXIT
for __qick_f in "$etc"/profile.d/*.sh; do
  if [ -r "$__qick_f" ]; then
    __qick_at=$__qick_f
    . "$__qick_f" </dev/null >/dev/null 2>&1
  fi
done
__qick_at=
"""


def _parse_env0(data: bytes) -> Dict[str, str]:
    env = {}
    for entry in data.split(b"\0"):
        if b"=" in entry:
            key, _, value = entry.partition(b"=")
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


@dataclass
class ProfileEnvironment:
    """What the profile scripts set or changed (``env``), and what a person should know."""
    env: Dict[str, str]
    notes: List[str] = field(default_factory=list)
    complete: Dict[str, str] = field(default_factory=dict)  # /etc/environment + the scripts


def board_environment(before: Dict[str, str], after: Dict[str, str]
                      ) -> Tuple[Dict[str, str], List[str]]:
    """The variables ``after`` set or changed relative to ``before``, minus shell internals
    and anything that looks like a secret (the file is world-readable); and notes."""
    kept, notes = {}, []
    for key, value in after.items():
        if key in SHELL_INTERNAL or key.startswith("BASH_FUNC_") or before.get(key) == value:
            continue
        if not boardaccess.ENV_NAME.match(key):
            continue
        if SECRET_NAME.search(key):
            notes.append(f"left out {key}: it looks like a secret and the file is readable by all")
            continue
        kept[key] = value
    unset = sorted(k for k in before if k not in after and k not in SHELL_INTERNAL)
    if unset:
        notes.append("the profile scripts unset " + ", ".join(unset) + "; an environment "
                     "file cannot unset, so the service keeps them from /etc/environment")
    return kept, notes


def capture_profile_environment(etc: str = "/etc", timeout: float = 60.0
                                ) -> ProfileEnvironment:
    """Source ``<etc>/environment`` and ``<etc>/profile.d/*.sh`` in one ``env -i bash`` and
    return what the scripts set or changed."""
    bash = shutil.which("bash")
    if bash is None:
        raise InstallError("bash is not installed: it is needed once, to read "
                           f"{etc}/profile.d/*.sh; install bash or write the file by hand")
    try:
        done = subprocess.run([bash, "--noprofile", "--norc", "-c", _CAPTURE, "qick-env", etc],
                              env={}, cwd="/", stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InstallError(f"sourcing {etc}/profile.d/*.sh did not finish in {timeout:.0f} s "
                           "(a script waits for something?); fix it and run again") from None
    parts = done.stdout.split(b"\0\0")
    if len(parts) != 3:
        raise InstallError(f"could not read the environment of {etc}/profile.d/*.sh "
                           f"(bash exited {done.returncode}); check them with "
                           f"'bash -lc env'")
    before, after = _parse_env0(parts[0]), _parse_env0(parts[1])
    env, notes = board_environment(before, after)
    stopped = parts[2].decode("utf-8", "replace")
    if stopped:
        notes.append(f"{stopped} exited the shell: the profile scripts after it were not read "
                     "(a login shell would stop there too); fix it and run again")
    complete = {k: v for k, v in after.items() if k not in SHELL_INTERNAL}
    return ProfileEnvironment(env, notes, complete)


def find_command() -> List[str]:
    """The daemon's command in the running interpreter's environment."""
    python = os.path.abspath(sys.executable)
    script = os.path.join(os.path.dirname(python), "qick-supervisor")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [python, "-m", "supervisor.cli"]


def find_pynq_state_dir() -> Optional[str]:
    """``pynq/pl_server`` of the importable ``pynq`` (PYNQ's ``STATE_DIR``), without
    importing it; None when there is no ``pynq``."""
    try:
        spec = importlib.util.find_spec("pynq")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = os.path.join(location, "pl_server")
        if os.path.isdir(folder):
            return folder
    return None


@dataclass
class Plan:
    """Everything ``install-service`` writes, computed without writing anything."""
    unit_path: str
    unit: str
    env_path: str
    env_text: str
    command: List[str]
    pynq_state_dir: Optional[str]
    env_files: List[str]
    profile: ProfileEnvironment


def plan(unit_path: str = DEFAULT_UNIT_PATH, etc: str = "/etc") -> Plan:
    profile = capture_profile_environment(etc)
    system_env = os.path.join(etc, "environment")
    env_path = os.path.join(etc, "qick", "board.env")
    env_files = ([system_env] if os.path.isfile(system_env) else []) + [env_path]
    command = find_command()
    state_dir = find_pynq_state_dir()
    if state_dir is None:
        profile.notes.append("pynq is not importable by " + sys.executable + ": PYNQ's state "
                             "folder is PYNQ 3's default, ignored if missing "
                             f"({boardaccess.DEFAULT_PYNQ_STATE_DIR})")
    if "XILINX_XRT" not in profile.complete:
        profile.notes.append(f"XILINX_XRT is set neither in {system_env} nor in "
                             f"{etc}/profile.d/*.sh: PYNQ will find no device (board = qick)")
    unit = boardaccess.render_unit(
        command, state_dir or boardaccess.DEFAULT_PYNQ_STATE_DIR, env_files,
        pynq_state_optional=state_dir is None)
    header = (f"The board's environment for qick.service: what {etc}/profile.d/*.sh set or\n"
              f"changed on top of {system_env}. Written by `qick-supervisor install-service`;\n"
              "run it again after changing those scripts.")
    return Plan(unit_path, unit, env_path, boardaccess.render_env_file(profile.env, header),
                command, state_dir, env_files, profile)


def _write_public(path: str, text: str) -> None:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, text, mode=0o644)
        os.chmod(path, 0o644)  # the umask may have narrowed it: systemd needs it readable
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror}") from exc


def install(p: Plan) -> List[str]:
    """Write the environment file and the unit, run ``systemctl daemon-reload``; return one
    line per thing done. Nothing is written unless ``systemctl`` is there."""
    if os.geteuid() != 0:
        raise InstallError("install-service writes system files and runs systemctl: run it as "
                           "root (sudo qick-supervisor install-service); --dry-run needs no root")
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise InstallError("systemctl is not on PATH: this machine does not run systemd "
                           "(use --dry-run to see the unit)")
    for path in (p.env_path, p.unit_path):
        why = cannot_write(path)
        if why:
            raise InstallError(f"cannot write {path}: {why}; give another --unit-path/--etc")
    done = []
    _write_public(p.env_path, p.env_text)
    names = ", ".join(sorted(p.profile.env)) or "nothing"
    done.append(f"wrote {p.env_path} (from the profile scripts: {names})")
    _write_public(p.unit_path, p.unit)
    done.append(f"wrote {p.unit_path} (ExecStart {' '.join(p.command)}; PYNQ state "
                f"{p.pynq_state_dir or 'not found'}; environment {' '.join(p.env_files)})")
    try:
        reload = subprocess.run([systemctl, "daemon-reload"], capture_output=True, text=True,
                                timeout=120)
    except subprocess.TimeoutExpired:
        raise ReloadFailed("systemctl daemon-reload did not finish in 120 s; the files are "
                           "written: run it again by hand") from None
    if reload.returncode != 0:
        said = (reload.stderr or reload.stdout).strip().splitlines()
        detail = said[-1] if said else f"exit {reload.returncode}"
        raise ReloadFailed(f"systemctl daemon-reload failed ({detail}); the files are written: "
                           "fix that, then run 'systemctl daemon-reload'")
    done.append("ran systemctl daemon-reload")
    return done

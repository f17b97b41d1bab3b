"""``qick-supervisor check --as-service``: open the board inside ``qick.service``'s sandbox.

The unit's ``[Service]`` section decides what the daemon may touch (``ProtectSystem``,
``ReadWritePaths``, ``DevicePolicy``/``DeviceAllow``, ...) and which environment it gets
(``EnvironmentFile``: PYNQ's ``XILINX_XRT``, ``BOARD``, the venv's paths). A board that
opens from the admin's shell may not open there. This runs the preflight's board step
(``check --only board``) as a transient service with the same properties::

    systemd-run --wait --pipe --collect --quiet --service-type=exec \\
        -p ProtectSystem=strict -p ReadWritePaths=... -p DeviceAllow=... ... \\
        <the unit's command> check --only board --config ... --credentials ...

When it fails there but passes with the sandbox left out (the environment kept), each
sandbox property is left out in turn until the board opens: that property is the one that
blocks it, and the answer says what to add to the unit.

Everything here but ``run_command`` and ``systemd_running`` is pure; the runner is a seam
(``Runner``: argv -> (exit code, output)) so the search is tested without processes.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from boardcore.errors import BoardConfigError

Property = Tuple[str, str]
Runner = Callable[[List[str]], Tuple[int, str]]

INSTALLED_UNIT = "/etc/systemd/system/qick.service"
REPO_UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "qick.service")
SYSTEMD_RUN = ["systemd-run", "--wait", "--pipe", "--collect", "--quiet",
               "--service-type=exec"]
RUN_SECONDS = 120     # the check's own limit (RuntimeMaxSec): an overlay loads in seconds
RUN_TIMEOUT = RUN_SECONDS + 30.0  # ours, above systemd's: systemd stops the check first
MAX_RUNS = 40         # the search is bounded: one run per sandbox property at most

# What the daemon's environment is made of: kept in every run, never "left out".
ENVIRONMENT_KEYS = frozenset({"Environment", "EnvironmentFile", "PassEnvironment",
                              "UnsetEnvironment", "WorkingDirectory"})
# What shapes the sandbox (who, which files, devices, system calls, limits).
SANDBOX_KEYS = frozenset({
    "User", "Group", "SupplementaryGroups", "DynamicUser", "RootDirectory", "RootImage",
    "UMask", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths",
    "NoExecPaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "DeviceAllow",
    "DevicePolicy", "NoNewPrivileges", "LockPersonality", "MemoryDenyWriteExecute",
    "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
    "CapabilityBoundingSet", "AmbientCapabilities", "SecureBits", "KeyringMode",
    "IPAddressAllow", "IPAddressDeny", "NetworkNamespacePath", "RemoveIPC", "MountFlags",
    "ProcSubset", "StateDirectory", "StateDirectoryMode", "RuntimeDirectory",
    "RuntimeDirectoryMode", "RuntimeDirectoryPreserve", "ConfigurationDirectory",
    "ConfigurationDirectoryMode", "CacheDirectory", "CacheDirectoryMode", "LogsDirectory",
    "LogsDirectoryMode"})
SANDBOX_PREFIXES = ("Protect", "Restrict", "Private", "Limit")
# Properties that only grant: leaving one out can never make the board open.
GRANTS = frozenset({"ReadWritePaths", "BindPaths", "BindReadOnlyPaths", "ExecPaths",
                    "AmbientCapabilities", "SupplementaryGroups", "IPAddressAllow",
                    "StateDirectory", "StateDirectoryMode", "RuntimeDirectory",
                    "RuntimeDirectoryMode", "RuntimeDirectoryPreserve",
                    "ConfigurationDirectory", "ConfigurationDirectoryMode", "CacheDirectory",
                    "CacheDirectoryMode", "LogsDirectory", "LogsDirectoryMode"})

# What to change in the unit when leaving out a property makes the board open.
HINTS = {
    "ProtectSystem": "add the path PYNQ writes (named in the board line above) to "
                     "ReadWritePaths",
    "ProtectKernelTunables": "it makes /sys read-only; add /sys/class/fpga_manager to "
                             "ReadWritePaths",
    "ProtectHome": "add the path under /home or /root named above to ReadWritePaths",
    "ReadOnlyPaths": "add the path named above to ReadWritePaths",
    "InaccessiblePaths": "take the path named above out of InaccessiblePaths",
    "DevicePolicy": "add the device named above to DeviceAllow (the render node "
                    "/dev/dri/renderD*: DeviceAllow=char-drm rw)",
    "DeviceAllow": "add the device named above to DeviceAllow",
    "PrivateDevices": "it hides /dev/mem, uio and the render node: leave it out and keep "
                      "DevicePolicy=closed with DeviceAllow lines instead",
    "User": "the board's devices need root (or that user's access to /dev/mem, uio and "
            "the render node)",
}


@dataclass
class Unit:
    """A unit file's sections as ordered (key, value) pairs; repeated keys kept apart."""
    path: str
    sections: Dict[str, List[Property]] = field(default_factory=dict)

    def service(self) -> List[Property]:
        return self.sections.get("Service", [])


def parse_unit(text: str, path: str = "<unit>") -> Unit:
    """Read systemd's unit syntax: ``[Section]``, ``Key=Value``, ``#``/``;`` comments, a
    trailing backslash continues a line, and an empty assignment (``Key=``) resets the
    key's earlier values in that section, as systemd does."""
    unit = Unit(path)
    section: Optional[str] = None
    pending = ""
    for raw in text.splitlines():
        line = (pending + " " + raw.strip()) if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, [])
            continue
        if "=" not in line or section is None:
            raise BoardConfigError(f"{path}: cannot read the line {line!r} (want Key=Value "
                                   "inside a [Section])")
        key, value = (part.strip() for part in line.split("=", 1))
        entries = unit.sections[section]
        if value == "":
            entries[:] = [(k, v) for k, v in entries if k != key]
        else:
            entries.append((key, value))
    return unit


def split_properties(service: Sequence[Property]) -> Tuple[List[Property], List[Property]]:
    """Split a ``[Service]`` section into (passed to ``systemd-run -p``, left out).

    Passed: what shapes the sandbox and the environment and is accepted for a transient
    service: ``ENVIRONMENT_KEYS``, ``SANDBOX_KEYS`` and any ``Protect*``, ``Restrict*``,
    ``Private*``, ``Limit*`` key. Left out: what makes no sense for a one-shot check, i.e.
    how the daemon is started, supervised and stopped (``Type``, ``NotifyAccess``,
    ``WatchdogSec``, ``ExecStart``, ``Restart*``, ``Timeout*``, ``StartLimit*``,
    ``KillMode``, ...) and anything not known to shape the sandbox. Order and repeated keys
    (one ``DeviceAllow`` per line) are kept: each becomes its own ``-p``.
    """
    passed, left_out = [], []
    for key, value in service:
        shapes = (key in ENVIRONMENT_KEYS or key in SANDBOX_KEYS
                  or key.startswith(SANDBOX_PREFIXES))
        (passed if shapes else left_out).append((key, value))
    return passed, left_out


def _exec_start(unit: Unit) -> List[str]:
    starts = [v for k, v in unit.service() if k == "ExecStart"]
    if not starts:
        raise BoardConfigError(f"{unit.path}: [Service] has no ExecStart; write the unit with "
                               "`qick-supervisor install-service`")
    try:
        words = shlex.split(starts[-1])
    except ValueError as exc:
        raise BoardConfigError(f"{unit.path}: cannot read ExecStart ({exc})") from None
    if not words:
        raise BoardConfigError(f"{unit.path}: ExecStart is empty")
    words[0] = words[0].lstrip("-@:+!")
    return words


def unit_option(unit: Unit, name: str) -> Optional[str]:
    """The value ExecStart gives an option (``--config``), or None: the check opens the
    board with the files the service will use."""
    words = _exec_start(unit)
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def unit_command(unit: Unit) -> List[str]:
    """The unit's program without its arguments: ``ExecStart``'s words up to the first
    long option (``/usr/local/bin/qick-supervisor``, or ``/venv/bin/python -m supervisor.cli``),
    without systemd's ``-@:+!`` prefixes."""
    command: List[str] = []
    for word in _exec_start(unit):
        if word.startswith("--") and command:  # the daemon's options; -m is python's
            break
        command.append(word)
    return command


def build_command(unit: Unit, config: str, credentials: str,
                  leave_out: Sequence[Property] = ()) -> List[str]:
    """The ``systemd-run`` argv that runs ``check --only board`` in the unit's sandbox and
    environment, without the properties in ``leave_out``."""
    passed, _ = split_properties(unit.service())
    props = [p for p in passed if p not in leave_out]
    argv = SYSTEMD_RUN + ["-p", f"RuntimeMaxSec={RUN_SECONDS}"]
    for key, value in props:
        argv += ["-p", f"{key}={value}"]
    if any(k == "RuntimeDirectory" for k, _ in props):
        # the real daemon may be running: the check must not remove its /run/qick on exit
        argv += ["-p", "RuntimeDirectoryPreserve=yes"]
    return argv + ["--", *unit_command(unit), "check", "--only", "board", "--config", config,
                   "--credentials", credentials]


def candidates(passed: Sequence[Property]) -> List[Tuple[str, List[Property]]]:
    """The sandbox properties to leave out in turn, as (label, properties) in the unit's
    order. One candidate per key (all its lines); ``DevicePolicy`` goes with the
    ``DeviceAllow`` lines (without a policy, any ``DeviceAllow`` closes the rest). Grants
    and the environment are never candidates."""
    out: List[Tuple[str, List[Property]]] = []
    seen = set()
    devices = [p for p in passed if p[0] in ("DevicePolicy", "DeviceAllow")]
    for key, value in passed:
        if key in seen or key in ENVIRONMENT_KEYS or key in GRANTS:
            continue
        if key in ("DevicePolicy", "DeviceAllow"):
            if "devices" in seen:
                continue
            seen.add("devices")
            policy = next((v for k, v in devices if k == "DevicePolicy"), None)
            label = f"DevicePolicy={policy}" if policy else "DeviceAllow"
            out.append((label, devices))
            continue
        seen.add(key)
        lines = [p for p in passed if p[0] == key]
        out.append((f"{key}={value}" if len(lines) == 1 else key, lines))
    return out


def hint(label: str) -> str:
    key = label.split("=", 1)[0]
    return HINTS.get(key, f"relax {label} in the unit, or leave it out")


@dataclass
class Verdict:
    ok: bool
    lines: List[str]


def check_as_service(unit: Unit, config: str, credentials: str, runner: Runner,
                     max_runs: int = MAX_RUNS) -> Verdict:
    """Run the board step in the unit's sandbox; on failure, find the property that blocks
    it (see the module docstring). ``lines`` are for people, in order."""
    rc, output = runner(build_command(unit, config, credentials))
    lines = [output.rstrip()] if output.strip() else []
    if rc == 0:
        return Verdict(True, lines + [f"the board opens in {unit.path}'s sandbox and "
                                      "environment: the service can be enabled"])
    passed, _ = split_properties(unit.service())
    sandbox = [p for p in passed if p[0] not in ENVIRONMENT_KEYS]
    rc, _ = runner(build_command(unit, config, credentials, leave_out=sandbox))
    if rc != 0:
        return Verdict(False, lines + [
            "the board does not open in the unit's environment even with the whole sandbox "
            "left out: fix what the board line says first (the environment: "
            "EnvironmentFile/Environment; the command: ExecStart)"])
    runs = 1
    for label, props in candidates(passed):
        if runs >= max_runs:
            return Verdict(False, lines + [
                f"the board opens without the sandbox, but leaving out one property at a "
                f"time found no single culprit within {max_runs} runs"])
        runs += 1
        rc, _ = runner(build_command(unit, config, credentials, leave_out=props))
        if rc == 0:
            return Verdict(False, lines + [
                f"the board opens when {label} is left out: {hint(label)}"])
    return Verdict(False, lines + [
        "the board opens without the sandbox, but no single property left out makes it "
        "open: more than one blocks it (compare the board line above with the unit)"])


def default_unit_path() -> str:
    return INSTALLED_UNIT if os.path.exists(INSTALLED_UNIT) else REPO_UNIT


def read_unit(path: str) -> Unit:
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_unit(fh.read(), path)
    except OSError as exc:
        raise BoardConfigError(f"cannot read the unit {path} ({exc.strerror}); pass "
                               "--unit PATH") from None


def command_problem(command: Sequence[str], unit_path: str) -> Optional[str]:
    """Why the unit's command cannot run here, or None."""
    program = command[0]
    if os.path.isabs(program) and not os.access(program, os.X_OK):
        return (f"{unit_path}: ExecStart names {program}, which is not an executable here; "
                "write the unit for this machine with `qick-supervisor install-service` "
                "(or pass --unit PATH)")
    return None


def systemd_running(marker: str = "/run/systemd/system") -> bool:
    """systemd's own test (sd_booted): this directory exists only when systemd is PID 1."""
    return os.path.isdir(marker)


def run_command(argv: List[str]) -> Tuple[int, str]:
    """The real runner: the transient service's output (it is piped back) and exit code."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 1, f"the check did not finish within {RUN_TIMEOUT:.0f} s"
    except OSError as exc:
        return 1, f"cannot run {argv[0]}: {exc.strerror}"
    return done.returncode, done.stdout

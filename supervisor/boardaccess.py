"""What PYNQ and QICK touch on a PYNQ image to load an overlay and allocate buffers, in one
table, and the ``qick.service`` unit rendered from it.

The table (``NEEDS``) is the single source of three things that must agree:

- the unit's sandbox: ``ReadWritePaths=``, ``DeviceAllow=``, each commented with who needs it;
- the environment the supervisor gives the executor (``supervisor.childenv.ENV_ALLOWED``);
- the ``/sys`` files that stay writable only because the unit leaves ``ProtectKernelTunables=``
  off (``ProtectSystem=strict`` does not cover ``/dev``, ``/proc`` and ``/sys``;
  ``ProtectKernelTunables=yes`` would make ``/sys`` read-only and PYNQ could not program the
  FPGA).

The facts, from PYNQ 3's source (``pynq/pl_server/``) and the RFSoC clock code QICK carries:

- ``pl_server/__init__.py`` imports the embedded (XRT) device only when ``XILINX_XRT`` is in
  the environment: without it PYNQ finds no device. PYNQ images set it, ``BOARD`` and the
  venv's ``PATH`` in ``/etc/environment`` and ``/etc/profile.d/*.sh``.
- ``embedded_device.py`` writes the bitstream to ``/lib/firmware/<name>.bin``, then writes
  ``/sys/class/fpga_manager/fpga0/flags`` and ``.../firmware``; it maps ``/dev/mem`` for
  registers, allocates buffers through XRT (the zocl render node ``/dev/dri/renderD*``), and
  runs ``xclbinutil`` (found on ``PATH``) when a bitstream has no ``.xclbin``, as QICK's have.
- ``global_state.py`` keeps ``global_pl_state.json`` (and ``embedded_device.py`` its
  ``_current_metadata.pkl``) in ``STATE_DIR``, the ``pl_server`` package folder itself.
- The RF clock chips (LMK/LMX) are programmed through ``spidev``: the driver is bound through
  ``/sys/bus/spi`` and the chips written through ``/dev/spidevB.C``.

Pure data and pure functions: importable on the board's Python 3.10 with nothing heavy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

# PYNQ 3 installs its packages into this venv; STATE_DIR is pynq/pl_server inside it.
PYNQ_VENV = "/usr/local/share/pynq-venv"
DEFAULT_PYNQ_STATE_DIR = PYNQ_VENV + "/lib/python3.10/site-packages/pynq/pl_server"
DEFAULT_COMMAND = (PYNQ_VENV + "/bin/qick-supervisor",)
DEFAULT_CONFIG = "/etc/qick/config"
DEFAULT_CREDENTIALS = "/etc/qick/credentials"
# What the original start script sourced: /etc/environment as systemd reads it, and the
# profile scripts captured into this file at install time (``qick-supervisor install-service``).
SYSTEM_ENV_FILE = "/etc/environment"
BOARD_ENV_FILE = "/etc/qick/board.env"
DEFAULT_ENV_FILES = (SYSTEM_ENV_FILE, BOARD_ENV_FILE)


@dataclass(frozen=True)
class Need:
    """One thing the daemon's process touches.

    ``kind``: ``"path"`` (a ``ReadWritePaths=`` entry), ``"sysfs"`` (written in ``/sys``,
    writable while ``ProtectKernelTunables=`` stays off), ``"device"`` (a ``DeviceAllow=``
    entry, ``what`` a path or ``char-<group>``), ``"env"`` (an environment variable the
    executor keeps). ``optional``: systemd's ``-`` prefix, ignored where it does not exist.
    """
    kind: str
    what: str
    who: str
    why: str
    access: str = "rw"
    optional: bool = False


PYNQ_STATE = "PYNQ_STATE_DIR"  # placeholder in NEEDS: found at install time

NEEDS: Tuple[Need, ...] = (
    # writable paths
    Need("path", "/var/lib/qick", "qick-supervisor", "the spool of workloads and results"),
    Need("path", "/run/qick", "qick-supervisor", "the children's bus socket and the board lock"),
    Need("path", "/lib/firmware", "PYNQ",
         "Overlay download writes the bitstream there as <name>.bin for the fpga_manager"),
    Need("path", PYNQ_STATE, "PYNQ",
         "global_pl_state.json and _current_metadata.pkl (STATE_DIR)", optional=True),
    # /sys: writable because ProtectKernelTunables= is off
    Need("sysfs", "/sys/class/fpga_manager/fpga0/flags", "PYNQ",
         "0 (full) or 1 (partial) before a download"),
    Need("sysfs", "/sys/class/fpga_manager/fpga0/firmware", "PYNQ",
         "the <name>.bin to program into the FPGA"),
    Need("sysfs", "/sys/bus/spi/devices/*/driver_override", "QICK",
         "binds the RF clock chips (LMK/LMX) to spidev"),
    Need("sysfs", "/sys/bus/spi/drivers/spidev/bind", "QICK", "the same binding"),
    # devices (DevicePolicy=closed: nothing else)
    Need("device", "/dev/mem", "PYNQ, QICK", "MMIO: the registers of every IP in the overlay"),
    Need("device", "char-uio", "PYNQ", "interrupts of the overlay's IP (/dev/uio*)"),
    Need("device", "/dev/xdevcfg", "PYNQ", "bitstream download on Zynq-7000 boards (older PYNQ)"),
    Need("device", "char-drm", "PYNQ (XRT)",
         "the zocl render node /dev/dri/renderD*: pyxrt opens the device and allocates buffers"),
    Need("device", "char-spidev", "QICK", "programs the RF clock chips (/dev/spidev*)"),
    Need("device", "/dev/null", "Python, subprocesses", "standard streams of subprocesses"),
    Need("device", "/dev/urandom", "Python", "random seeds, temporary names", access="r"),
    # environment the executor keeps (everything else is dropped before it opens the board)
    Need("env", "XILINX_XRT", "PYNQ", "without it pynq.pl_server registers no embedded device"),
    Need("env", "BOARD", "PYNQ, QICK", "the board's name (ZCU216, RFSoC4x2, ...)"),
    Need("env", "PATH", "PYNQ", "the venv's bin and xclbinutil (run for bitstreams without "
         ".xclbin)"),
    Need("env", "LD_LIBRARY_PATH", "XRT", "where libxrt_core is found, if not in /usr/lib"),
    Need("env", "PYTHONPATH", "Python", "packages outside the venv, if the image sets them"),
    Need("env", "LANG", "Python", "the locale (text encoding)"),
    Need("env", "LC_ALL", "Python", "the locale"),
    Need("env", "LC_CTYPE", "Python", "the locale"),
    Need("env", "TZ", "Python", "local time in logs"),
    Need("env", "PYTHONUNBUFFERED", "qick-supervisor", "the executor's log lines arrive at once"),
    Need("env", "PYTHONDONTWRITEBYTECODE", "Python", "no .pyc writes into read-only packages"),
)


def needs(kind: str) -> Tuple[Need, ...]:
    return tuple(n for n in NEEDS if n.kind == kind)


def env_allowed() -> Tuple[str, ...]:
    """The environment variable names the executor keeps."""
    return tuple(n.what for n in needs("env"))


def read_write_paths(pynq_state_dir: Optional[str] = DEFAULT_PYNQ_STATE_DIR,
                     pynq_state_optional: bool = True) -> Tuple[Tuple[Need, str], ...]:
    """``(need, ReadWritePaths value)`` for each writable path; PYNQ's state folder is
    ``pynq_state_dir`` (``None``: left out), with ``-`` when ``pynq_state_optional``."""
    out = []
    for need in needs("path"):
        if need.what == PYNQ_STATE:
            if pynq_state_dir is None:
                continue
            out.append((need, ("-" if pynq_state_optional else "") + pynq_state_dir))
        else:
            out.append((need, ("-" if need.optional else "") + need.what))
    return tuple(out)


# --- quoting ---------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def quote_unit_word(word: str) -> str:
    """One word of a unit file setting (``ExecStart=``, ``ReadWritePaths=``): ``%`` and ``$``
    escaped for systemd's specifiers and variables, quoted when it has spaces or quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_env_file(env: Mapping[str, str], header: str = "") -> str:
    """A systemd ``EnvironmentFile=``: one ``KEY="value"`` a line, sorted; inside the double
    quotes ``\\``, ``"``, `````` ` `````` and ``$`` are backslash-escaped (what systemd's parser
    and a shell both undo), so any value, newlines included, comes back as it was."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key in sorted(env):
        if not ENV_NAME.match(key):
            raise ValueError(f"not an environment variable name: {key!r}")
        value = re.sub(r'([\\"`$])', r"\\\1", env[key])
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


# --- the unit --------------------------------------------------------------------------------

_UNIT_HEAD = """\
# The QICK board daemon. Written by `qick-supervisor install-service` for this machine (the
# repository's copy is supervisor/boardaccess.py render_unit() with PYNQ 3's defaults);
# see README "Installing on a board". What each allowance is for: supervisor/boardaccess.py.
[Unit]
Description=QICK board daemon (shares this RFSoC board through the queue)
Documentation=file:///etc/qick/config
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=notify
# READY=1 once the downloader, executor and uploader are up; WATCHDOG=1 every third of
# WatchdogSec while the loop and the children's heartbeats are healthy.
NotifyAccess=main
WatchdogSec=30
"""

_UNIT_MIDDLE = """\
Restart=on-failure
RestartSec=5
TimeoutStartSec=180
# SIGTERM drains: the current workload may finish within [supervisor] stop_timeout_seconds
TimeoutStopSec=90
KillMode=mixed
# The spool (/var/lib/qick/spool) and the bus and board lock (/run/qick)
StateDirectory=qick
StateDirectoryMode=0750
RuntimeDirectory=qick
RuntimeDirectoryMode=0750
ConfigurationDirectory=qick
# Runs as root: the executor maps /dev/mem and the uio devices of the RFSoC, and root lets it
# move into a private network namespace. The rest of the system is kept out of reach:
ProtectSystem=strict
"""

_UNIT_HARDENING = """\
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
NoNewPrivileges=yes
RestrictNamespaces=net
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
"""

_UNIT_TAIL = """\
LimitCORE=0
UMask=0027

[Install]
WantedBy=multi-user.target
"""


def render_unit(command: Sequence[str] = DEFAULT_COMMAND,
                pynq_state_dir: Optional[str] = DEFAULT_PYNQ_STATE_DIR,
                env_files: Sequence[str] = DEFAULT_ENV_FILES,
                pynq_state_optional: bool = True,
                config: str = DEFAULT_CONFIG, credentials: str = DEFAULT_CREDENTIALS) -> str:
    """``qick.service`` from ``NEEDS``. ``command``: the daemon's argv before ``--config``;
    ``env_files``: read in this order (a later file wins), each with ``-`` (a missing file
    is no error); ``pynq_state_dir``: PYNQ's ``pl_server`` folder (``None``: PYNQ absent)."""
    if not command:
        raise ValueError("render_unit: the command is empty")
    out = [_UNIT_HEAD]
    out.append("# The board's environment, as the original start script had it (it sourced "
               "/etc/environment\n# and /etc/profile.d/*.sh); systemd reads these KEY=VALUE "
               "files itself, no shell runs.\n# XILINX_XRT among them: without it PYNQ finds "
               "no device. A later file wins.\n")
    out.extend(f"EnvironmentFile=-{path}\n" for path in env_files)
    argv = list(command) + ["--config", config, "--credentials", credentials]
    out.append("ExecStart=" + " ".join(quote_unit_word(a) for a in argv) + "\n")
    out.append(_UNIT_MIDDLE)
    out.append("# Writable despite ProtectSystem=strict, each for who needs it:\n")
    for need, value in read_write_paths(pynq_state_dir, pynq_state_optional):
        note = " (\"-\": ignored if missing)" if value.startswith("-") else ""
        out.append(f"# {need.who}: {need.why}{note}\n")
        out.append(f"ReadWritePaths={quote_unit_word(value)}\n")
    out.append("# ProtectSystem=strict leaves /sys writable, and ProtectKernelTunables= stays "
               "off on purpose\n# (it would make /sys read-only). Written there:\n")
    for need in needs("sysfs"):
        out.append(f"#   {need.who}: {need.what}: {need.why}\n")
    out.append(_UNIT_HARDENING)
    out.append("# Not PrivateDevices: the board's devices are needed; only these, each for who "
               "needs it:\nDevicePolicy=closed\n")
    for need in needs("device"):
        out.append(f"# {need.who}: {need.why}\n")
        out.append(f"DeviceAllow={need.what} {need.access}\n")
    out.append(_UNIT_TAIL)
    return "".join(out)


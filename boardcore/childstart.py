"""How the supervisor starts a board child, and how the child learns its settings.

A child's command line carries only what is not in the config file: the bus address, the
supervisor's pid, the config and credentials paths, and the spool and run directory where
the supervisor computed them (their defaults come from systemd's environment, which the
executor does not get). Everything else the child reads from the config file itself,
through the one loader (``boardcore.settings.load_settings``), so the parent and its
children read the same declarations.

    python -m <module> --bus ipc://... --parent PID --config FILE [--credentials FILE]
                       --spool DIR --run-dir DIR

The executor never gets ``--credentials``; ``python -m executor.main --check`` takes no bus.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from boardcore.settings import BoardSettings, load_settings

# each child's role and the module the supervisor runs for it (it imports none of them)
MODULES = {"downloader": "downloader.main", "executor": "executor.main",
           "uploader": "uploader.main"}


@dataclass(frozen=True)
class ChildStart:
    """What the supervisor tells a child on its command line."""
    bus: Optional[str]
    parent: Optional[int]
    config: Optional[str]
    credentials: Optional[str]
    spool: str
    run_dir: str

    def argv(self) -> List[str]:
        args: List[str] = []
        if self.bus is not None:
            args += ["--bus", self.bus]
        if self.parent is not None:
            args += ["--parent", str(self.parent)]
        if self.config:
            args += ["--config", str(self.config)]
        if self.credentials:
            args += ["--credentials", str(self.credentials)]
        return args + ["--spool", str(self.spool), "--run-dir", str(self.run_dir)]


def child_parser(prog: str, description: str, bus_required: bool = True
                 ) -> argparse.ArgumentParser:
    """The command line every board child takes (``ChildStart.argv`` writes it)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--bus", required=bus_required,
                   help="the supervisor's bus address (ipc://...)")
    p.add_argument("--parent", type=int, default=None, help="the supervisor's pid")
    p.add_argument("--config", default=None, help="the board's config file (its [supervisor], "
                   "[executor] and [uploader] settings; none: the defaults)")
    p.add_argument("--credentials", default=None, help="the device's credentials file")
    p.add_argument("--spool", default=None, help="the spool folder (default: the config's)")
    p.add_argument("--run-dir", default=None,
                   help="the private run directory (default: the config's)")
    return p


def child_settings(args: argparse.Namespace) -> BoardSettings:
    """The settings of the config file, with the spool and run directory the supervisor
    computed. Raises BoardConfigError (the file is read again: it may have changed)."""
    settings = load_settings(args.config)
    if args.spool:
        settings.spool = Path(args.spool)
    if args.run_dir:
        settings.run_dir = Path(args.run_dir)
    return settings

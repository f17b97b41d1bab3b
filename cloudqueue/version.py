"""``--version`` of the three commands (``userclient``, ``qick-queue``, ``qick-supervisor``):
this package's version and qick's, read from the installed distributions' metadata (qick
itself is not imported: on a PC without the board, importing it is slow and noisy)."""
from __future__ import annotations

import argparse
import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import Any

DISTRIBUTION = "qick-queue"


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def version_text(prog: str) -> str:
    """``userclient 0.1.0 (qick-queue), qick 0.2.436``."""
    ours = _installed(DISTRIBUTION) or "unknown (qick-queue is not installed)"
    qick = _installed("qick")
    if qick is None:
        qick = ("installed, version unknown" if importlib.util.find_spec("qick")
                else "not installed")
    return f"{prog} {ours} ({DISTRIBUTION}), qick {qick}"


class VersionAction(argparse.Action):
    """``--version``: print ``version_text(prog)`` and exit 0 (computed only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS,
                 help: str = "print the versions (this package, qick) and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text(parser.prog))
        parser.exit()

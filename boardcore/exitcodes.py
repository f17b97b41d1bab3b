"""Exit codes of the board daemon's processes, in one place.

The supervisor reads a child's exit code to say why it died (see ``policy.classify_exit``).
"""
from __future__ import annotations

OK = 0                 # clean stop (asked to stop, or drained)
FAILURE = 1            # unexpected error (a bug): restart with backoff
USAGE = 2              # bad command line / config: a person must fix it
BOARD_BUSY = 75        # executor: another process holds the board lock (EX_TEMPFAIL)
BOARD_OPEN_FAILED = 76 # executor: the board (QickSoc / simulated) could not be opened
SANDBOX_FAILED = 77    # executor: limits or lock file could not be set up
PARENT_GONE = 78       # a child saw its supervisor disappear and stopped

MEANING = {
    OK: "stopped cleanly",
    FAILURE: "stopped on an unexpected error (see its log)",
    USAGE: "refused its command line or configuration",
    BOARD_BUSY: "could not lock the board: another program (a notebook?) is using it",
    BOARD_OPEN_FAILED: "could not open the board (see its log)",
    SANDBOX_FAILED: "could not set up its sandbox (limits or lock file)",
    PARENT_GONE: "stopped because its supervisor went away",
}

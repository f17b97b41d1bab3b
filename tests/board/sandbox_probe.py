"""A tiny program the sandbox tests run as a real process: applies one sandbox step and
reports what it sees as one JSON line on stdout."""
from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time

from executor import sandbox


def main() -> int:
    action = sys.argv[1]
    if action == "lock":
        try:
            with sandbox.BoardLock(sys.argv[2]):
                print(json.dumps({"locked": True}), flush=True)
                time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)
        except sandbox.BoardBusy as exc:
            print(json.dumps({"locked": False, "error": str(exc)}), flush=True)
        return 0
    if action == "orphan":
        # parent of a grandchild: start it and exit at once; the grandchild prints its pid
        import subprocess
        child = subprocess.Popen([sys.executable, "-m", "tests.board.sandbox_probe",
                                  "pdeathsig", str(os.getpid())], stdout=subprocess.PIPE,
                                 start_new_session=True)
        print(child.stdout.readline().decode().strip(), flush=True)
        return 0
    if action == "pdeathsig":
        ok = sandbox.die_with_parent(int(sys.argv[2]))
        print(json.dumps({"pid": os.getpid(), "armed": ok}), flush=True)
        time.sleep(60)
        return 0
    if action == "limits":
        applied = sandbox.set_limits(address_space=2 * 2**30, open_files=64)
        out = {"applied": applied,
               "core": resource.getrlimit(resource.RLIMIT_CORE),
               "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
               "as": resource.getrlimit(resource.RLIMIT_AS),
               "pgid_is_pid": sandbox.own_process_group() == os.getpid()}
        try:
            bytearray(3 * 2**30)
            out["big_alloc"] = "allowed"
        except MemoryError:
            out["big_alloc"] = "MemoryError"
        print(json.dumps(out), flush=True)
        return 0
    if action == "network":
        state = sandbox.isolate_network()
        try:
            socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2).close()
            reached = True
        except OSError:
            reached = False
        print(json.dumps({"network": state, "reached_loopback_server": reached}), flush=True)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

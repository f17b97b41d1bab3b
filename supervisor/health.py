"""The admins' health endpoint: a small threaded stdlib HTTP server (no web framework on the
board). It only reads the snapshot the supervisor's loop publishes, so it never blocks the
loop, and it notices a stalled loop (an old snapshot).

    /healthz   200 while the supervisor loop is alive (snapshot fresh), else 503
    /readyz    200 when the executor is ready and the queue was reached recently, else 503
    /status    the snapshot as JSON
    /metrics   Prometheus text format
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Tuple

STALE_LOOP_SECONDS = 5.0


def loop_alive(snapshot: Dict[str, Any], now: float) -> bool:
    return now - snapshot.get("loop_at", 0.0) <= STALE_LOOP_SECONDS


def readiness(snapshot: Dict[str, Any], now: float) -> Tuple[bool, str]:
    if not loop_alive(snapshot, now):
        return False, "the supervisor loop is stalled"
    executor = snapshot.get("children", {}).get("executor", {})
    if executor.get("state") != "RUNNING":
        return False, f"executor is {executor.get('state', 'absent')}"
    queue = snapshot.get("queue", {})
    if not queue.get("ok"):
        return False, f"queue not reachable: {queue.get('error') or 'no contact yet'}"
    return True, "ready"


def metrics_text(snapshot: Dict[str, Any]) -> str:
    lines = []

    def metric(name: str, kind: str, help_text: str, samples) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

    children = snapshot.get("children", {})
    metric("qick_child_up", "gauge", "1 when the child process is RUNNING",
           [({"child": n}, int(c.get("state") == "RUNNING")) for n, c in children.items()])
    metric("qick_child_restarts_total", "counter", "restarts of each child",
           [({"child": n}, c.get("restarts", 0)) for n, c in children.items()])
    metric("qick_spool_depth", "gauge", "workloads in each spool folder",
           [({"folder": f}, d) for f, d in snapshot.get("spool", {}).items()])
    counts = snapshot.get("counts", {})
    metric("qick_workloads_total", "counter", "workloads finished on this board, by outcome",
           [({"outcome": k}, v) for k, v in counts.items()])
    metric("qick_board_simulated", "gauge", "1 when the board is simulated (no RFSoC)",
           [({}, int(bool(snapshot.get("simulated"))))])
    metric("qick_board_error", "gauge", "1 while the board reports ERROR",
           [({}, int(snapshot.get("state") == "ERROR"))])
    queue = snapshot.get("queue", {})
    metric("qick_queue_reachable", "gauge", "1 when the last queue contact succeeded",
           [({}, int(bool(queue.get("ok"))))])
    metric("qick_queue_last_contact_timestamp_seconds", "gauge",
           "wall-clock time of the last successful queue contact",
           [({}, queue.get("last_ok_at") or 0)])
    metric("qick_workload_seconds_total", "counter", "board time spent running workloads",
           [({}, round(snapshot.get("busy_seconds", 0.0), 3))])
    return "\n".join(lines) + "\n"


class HealthServer:
    """Serve ``snapshot()`` on ``address`` from a daemon thread. ``port`` is the bound port."""

    def __init__(self, address: Tuple[str, int], snapshot: Callable[[], Dict[str, Any]]):
        get = snapshot

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the journal is not an access log
                pass

            def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                snap, now = get(), time.monotonic()
                path = self.path.split("?")[0]
                if path == "/healthz":
                    ok = loop_alive(snap, now)
                    self._send(200 if ok else 503, json.dumps(
                        {"ok": ok, "detail": "alive" if ok else "supervisor loop stalled"}))
                elif path == "/readyz":
                    ok, why = readiness(snap, now)
                    self._send(200 if ok else 503, json.dumps({"ok": ok, "detail": why}))
                elif path == "/status":
                    self._send(200, json.dumps(public(snap), indent=1, sort_keys=True))
                elif path == "/metrics":
                    self._send(200, metrics_text(snap), "text/plain; version=0.0.4")
                else:
                    self._send(404, json.dumps({"ErrorMessage": f"no such page {path}; try "
                                                "/healthz, /readyz, /status or /metrics"}))

        self.httpd = ThreadingHTTPServer(address, Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def public(snapshot: Dict[str, Any]) -> Dict[str, Any]:
    """The snapshot without monotonic-clock internals."""
    return {k: v for k, v in snapshot.items() if k != "loop_at"}

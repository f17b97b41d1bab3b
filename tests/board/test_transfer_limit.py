"""``download_file(max_bytes=...)``: a file over the limit is refused before or while it is
read, so a huge workload never fills the board's disk, and nothing is left behind."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudqueue.errors import DownloadTooLarge
from qickbase.backoff import Backoff
from cloudqueue.transfer import CHUNK_SIZE, download_file

pytestmark = pytest.mark.device310
NOSLEEP = {"backoff": Backoff(base=0.001, cap=0.002), "tries": 3, "sleep": lambda s: None}
ENDLESS = 2**30  # what the server would send if the client never stopped reading


class Streamer:
    """A real HTTP server sending ``total`` bytes, with a Content-Length or chunked
    (no announced length); it records how many bytes it managed to send."""

    def __init__(self, total: int, announce: bool):
        self.sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Connection", "close")
                if announce:
                    self.send_header("Content-Length", str(total))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"x" * CHUNK_SIZE
                try:
                    while outer.sent < total:
                        piece = block[:total - outer.sent]
                        if announce:
                            self.wfile.write(piece)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        outer.sent += len(piece)
                    if not announce:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client hung up: what we want

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_announced_length_over_the_limit_is_refused_before_reading(tmp_path):
    dest = tmp_path / "spool" / "workload.gz"
    with Streamer(ENDLESS, announce=True) as srv:
        with pytest.raises(DownloadTooLarge) as err:
            download_file(srv.url, dest, max_bytes=1000, **NOSLEEP)
    assert err.value.kind == "too_large" and err.value.size == ENDLESS
    assert f"{ENDLESS} bytes, over the limit of 1000 bytes" in str(err.value)
    assert list(dest.parent.iterdir()) == []  # no partial file


def test_an_unannounced_stream_stops_once_over_the_limit(tmp_path):
    dest = tmp_path / "workload.gz"
    with Streamer(ENDLESS, announce=False) as srv:
        with pytest.raises(DownloadTooLarge, match="more than 200000 bytes") as err:
            download_file(srv.url, dest, max_bytes=200_000, **NOSLEEP)
        assert srv.sent < 64 * 2**20  # stopped reading long before the end
    assert err.value.size == 200_001
    assert list(tmp_path.iterdir()) == []


def test_a_file_at_the_limit_is_kept(tmp_path):
    dest = tmp_path / "workload.gz"
    for announce in (True, False):
        with Streamer(3 * CHUNK_SIZE, announce=announce) as srv:
            done = download_file(srv.url, dest, max_bytes=3 * CHUNK_SIZE, **NOSLEEP)
        assert done.size == 3 * CHUNK_SIZE == dest.stat().st_size


def test_a_nonsense_content_length_is_ignored_not_a_crash():
    from cloudqueue.transfer import _announced_length
    assert _announced_length({"Content-Length": "12"}) == 12
    assert _announced_length({"Content-Length": "twelve"}) is None
    assert _announced_length({}) is None

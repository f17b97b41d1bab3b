"""Retry policy and error mapping: transient failures only, never a 4xx, unsafe POSTs never."""
from __future__ import annotations

import socket
import threading

import pytest
import requests
import urllib3
import urllib3.connection
import urllib3.exceptions

from cloudqueue.errors import (AuthError, BadRequest, Conflict, Forbidden, NotFound,
                               ServiceUnavailable)
from cloudqueue.httpcall import call, is_transient_status, never_sent
from qickbase.backoff import Backoff

from .fakes import FakeServer, Reply

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10

FAST = Backoff(base=0.001, cap=0.002)
TRIES = 4


def test_only_gateway_statuses_are_transient():
    assert all(is_transient_status(s) for s in (502, 503, 504))
    assert not any(is_transient_status(s) for s in (400, 401, 403, 404, 409, 413, 500))


def sequence(*replies):
    replies = list(replies)
    return lambda seen: replies.pop(0) if len(replies) > 1 else replies[0]


def test_503_then_200_is_retried_with_backoff():
    slept = []
    with FakeServer(sequence(Reply(503, {"ErrorMessage": "busy"}), Reply(200, {"ok": 1}))) as srv:
        answer = call(requests.Session(), "GET", srv.url + "/x", what="t", timeout=5,
                      backoff=FAST, tries=TRIES, sleep=slept.append)
        assert answer.json() == {"ok": 1}
        assert len(srv.seen) == 2 and len(slept) == 1


@pytest.mark.parametrize("status,error", [(400, BadRequest), (401, AuthError), (403, Forbidden),
                                          (404, NotFound), (409, Conflict)])
def test_4xx_is_never_retried_and_maps_to_the_hierarchy(status, error):
    body = {"ErrorMessage": "nope", "ErrorKind": "some_kind"}
    with FakeServer(lambda seen: Reply(status, body)) as srv:
        with pytest.raises(error) as err:
            call(requests.Session(), "GET", srv.url + "/x", what="get thing", timeout=5,
                 backoff=FAST, tries=TRIES, sleep=lambda s: None, retry_on_401=False)
        assert len(srv.seen) == 1
    assert "get thing: nope" in str(err.value) and err.value.kind == "some_kind"
    assert err.value.status == status


@pytest.mark.parametrize("body", [{"message": "Unauthorized"}, {"Message": "User is not"}])
def test_stock_error_bodies_give_the_message(body):
    with FakeServer(lambda seen: Reply(403, body)) as srv:
        with pytest.raises(Forbidden) as err:
            call(requests.Session(), "GET", srv.url, what="w", timeout=5)
    assert list(body.values())[0] in str(err.value)


def test_unsafe_post_is_not_retried_after_a_502():
    with FakeServer(sequence(Reply(502), Reply(201, {}))) as srv:
        with pytest.raises(ServiceUnavailable):
            call(requests.Session(), "POST", srv.url, what="w", timeout=5, backoff=FAST,
                 tries=TRIES, safe=False, sleep=lambda s: None)
        assert len(srv.seen) == 1


def test_connection_refused_counts_as_never_sent_and_gives_up_with_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    slept = []
    with pytest.raises(ServiceUnavailable) as err:
        call(requests.Session(), "POST", f"http://127.0.0.1:{port}/x", what="submit",
             timeout=2, backoff=FAST, tries=TRIES, safe=False, sleep=slept.append)
    assert "cannot reach" in str(err.value) and "4 tries" in str(err.value)
    assert len(slept) == 3  # refused connections are retried even for a POST


def test_never_sent_is_false_for_a_read_timeout():
    assert not never_sent(requests.ReadTimeout("slow"))
    assert never_sent(requests.ConnectTimeout("no route"))


# --- never_sent: what the exception is, as requests and urllib3 build and chain them -------

def _raised(make):
    """The exception ``make()`` raises, with the __context__ a real raise gives it."""
    try:
        make()
    except BaseException as exc:  # noqa: BLE001 - capturing is the point
        return exc
    raise AssertionError("nothing was raised")


def _wrapped(reason, kind=requests.exceptions.ConnectionError):
    """urllib3's MaxRetryError around ``reason``, in requests' own exception (as the
    HTTPAdapter raises it)."""
    url = "http://queue.example.org/x"
    pool = urllib3.HTTPConnectionPool("queue.example.org")
    return kind(urllib3.exceptions.MaxRetryError(pool, url, reason))


def _connection():
    return urllib3.connection.HTTPConnection("queue.example.org", 80)


def _refused():
    def make():
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise urllib3.exceptions.NewConnectionError(
                _connection(), "Failed to establish a new connection") from exc
    return _wrapped(_raised(make))


def _unresolved():
    def make():
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(
                "queue.example.org", _connection(), exc) from exc
    return _wrapped(_raised(make))


def _connect_timeout():
    reason = urllib3.exceptions.ConnectTimeoutError(_connection(), "timed out")
    return _wrapped(reason, requests.exceptions.ConnectTimeout)


def _read_timeout():
    pool = urllib3.HTTPConnectionPool("queue.example.org")
    reason = urllib3.exceptions.ReadTimeoutError(pool, "/x", "Read timed out.")
    return requests.exceptions.ReadTimeout(reason)


def _reset_while_answering():
    reason = urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    return requests.exceptions.ConnectionError(reason)


class NewConnectionError(Exception):
    """Named like urllib3's, but not it: the name must decide nothing."""


class RefusedByProxy(ConnectionRefusedError):
    """Not named like anything known, but a refused connection."""


def _looped():
    first, second = OSError("a"), OSError("b")
    first.__context__, second.__context__ = second, first
    return first


@pytest.mark.parametrize("make,never", [
    (_refused, True),
    (_unresolved, True),
    (_connect_timeout, True),
    (lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True),
    (lambda: RefusedByProxy(111, "refused"), True),
    (_read_timeout, False),
    (_reset_while_answering, False),
    (lambda: NewConnectionError("lookalike"), False),
    (lambda: requests.exceptions.ConnectionError(NewConnectionError("lookalike")), False),
    (_looped, False),
], ids=["refused", "unresolved", "connect-timeout", "bare-gaierror", "refused-subclass",
        "read-timeout", "reset-while-answering", "lookalike-name", "lookalike-wrapped",
        "context-loop"])
def test_never_sent_is_decided_by_what_the_exception_is(make, never):
    assert never_sent(make()) is never


def test_a_real_refused_connection_is_never_sent(closed_port):
    with pytest.raises(requests.exceptions.ConnectionError) as err:
        requests.get(f"http://127.0.0.1:{closed_port}/x", timeout=5)
    assert never_sent(err.value)


def test_a_real_request_the_server_read_and_dropped_may_have_been_sent():
    with socket.create_server(("127.0.0.1", 0)) as server:
        def swallow():
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)  # the request arrived; no answer
        reader = threading.Thread(target=swallow, daemon=True)
        reader.start()
        with pytest.raises(requests.exceptions.ConnectionError) as err:
            requests.post(f"http://127.0.0.1:{server.getsockname()[1]}/x", data=b"{}",
                          timeout=5)
        reader.join(5)
    assert not never_sent(err.value)


def test_a_real_read_timeout_may_have_been_sent():
    with socket.create_server(("127.0.0.1", 0)) as server:  # listens, never answers
        with pytest.raises(requests.exceptions.ReadTimeout) as err:
            requests.post(f"http://127.0.0.1:{server.getsockname()[1]}/x", data=b"{}",
                          timeout=(5, 0.2))
    assert not never_sent(err.value)


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_401_invalidates_the_token_and_retries_once():
    class Counting:
        def __init__(self):
            self.invalidated = 0

        def __call__(self, request):
            request.headers["Authorization"] = f"Bearer t{self.invalidated}"
            return request

        def invalidate(self):
            self.invalidated += 1
            return True

    auth = Counting()
    with FakeServer(lambda seen: Reply(200, {}) if seen.headers["authorization"] == "Bearer t1"
                    else Reply(401, {"message": "Unauthorized"})) as srv:
        call(requests.Session(), "GET", srv.url, what="w", timeout=5, auth=auth)
        assert auth.invalidated == 1 and len(srv.seen) == 2
    with FakeServer(lambda seen: Reply(401, {"message": "Unauthorized"})) as srv:
        with pytest.raises(AuthError):
            call(requests.Session(), "GET", srv.url, what="w", timeout=5, auth=Counting())
        assert len(srv.seen) == 2  # once more, not forever

"""Retry policy and error mapping: transient failures only, never a 4xx, unsafe POSTs never."""
from __future__ import annotations

import socket

import pytest
import requests

from cloudqueue.errors import (AuthError, BadRequest, Conflict, Forbidden, NotFound,
                               ServiceUnavailable)
from cloudqueue.httpcall import Backoff, call, is_transient_status, never_sent

from .fakes import FakeServer, Reply

pytestmark = pytest.mark.device310  # the board runs this code on Python 3.10

FAST = Backoff(base=0.001, cap=0.002, tries=4)


def test_backoff_doubles_with_jitter_and_a_cap():
    policy = Backoff(base=1.0, factor=2.0, cap=5.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(5)] == [1, 2, 4, 5, 5]
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(3)] == [0.5, 1, 2]


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
                      backoff=FAST, sleep=slept.append)
        assert answer.json() == {"ok": 1}
        assert len(srv.seen) == 2 and len(slept) == 1


@pytest.mark.parametrize("status,error", [(400, BadRequest), (401, AuthError), (403, Forbidden),
                                          (404, NotFound), (409, Conflict)])
def test_4xx_is_never_retried_and_maps_to_the_hierarchy(status, error):
    body = {"ErrorMessage": "nope", "ErrorKind": "some_kind"}
    with FakeServer(lambda seen: Reply(status, body)) as srv:
        with pytest.raises(error) as err:
            call(requests.Session(), "GET", srv.url + "/x", what="get thing", timeout=5,
                 backoff=FAST, sleep=lambda s: None, retry_on_401=False)
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
                 safe=False, sleep=lambda s: None)
        assert len(srv.seen) == 1


def test_connection_refused_counts_as_never_sent_and_gives_up_with_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    slept = []
    with pytest.raises(ServiceUnavailable) as err:
        call(requests.Session(), "POST", f"http://127.0.0.1:{port}/x", what="submit",
             timeout=2, backoff=FAST, safe=False, sleep=slept.append)
    assert "cannot reach" in str(err.value) and "4 tries" in str(err.value)
    assert len(slept) == 3  # refused connections are retried even for a POST


def test_never_sent_is_false_for_a_read_timeout():
    assert not never_sent(requests.ReadTimeout("slow"))
    assert never_sent(requests.ConnectTimeout("no route"))


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

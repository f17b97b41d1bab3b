"""Fuzz every endpoint of a running service with generated bodies, query strings and headers
(hypothesis, a fixed seed, 600 + 200 examples, about half a minute; QICK_FUZZ_SCALE=5 for a
longer run), as an admin, a user, a device and a stranger; and a smaller set under
``--stock-protocol``; each on both database engines (SQLite, PostgreSQL).

What must hold for every request: no answer >= 500 (under ``--stock-protocol`` only the stock
handler's documented 500 for an unknown id); every 4xx carries ``{ErrorMessage, ErrorKind}``
(except the shapes the stock side fixes: Cognito's ``{__type, message}`` at ``POST /``,
OAuth2's ``{error}`` at ``/oauth2/token``, the stock gateway's under ``--stock-protocol``);
a refused request changes nothing in the database (but the device's ``last_seen`` and an API
key's ``last_used``, which record any call); the keep-alive connection stays usable after
every answer.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queueservice.db import Database
from queueservice.schema import metadata
from tests.conftest import QueueService, start_queue_service
from tests.server.api import World, submit
from tests.server.conftest import DATABASES, engine_options

# -- what is sent -------------------------------------------------------------------------
#: (method, path); ``{device}`` and the like are filled with real ids or fuzzed segments.
#: The ``victim`` ids of the destructive admin paths are of their own user/device/key, so
#: that a generated valid request cannot take the callers' identities away mid-run.
ENDPOINTS = [
    ("GET", "/capabilities"), ("POST", "/users"), ("GET", "/users"),
    ("POST", "/users/{victim_user}/disable"), ("POST", "/users/{victim_user}/enable"),
    ("GET", "/api-keys"), ("POST", "/api-keys"), ("POST", "/api-keys/{victim_key}/revoke"),
    ("POST", "/devices"), ("GET", "/devices"), ("GET", "/devices/{device}"),
    ("PUT", "/devices/{device}"), ("PATCH", "/devices/{device}"),
    ("DELETE", "/devices/{victim_device}"), ("POST", "/devices/{victim_device}/rotate-secret"),
    ("GET", "/devices/{device}/workload"), ("GET", "/devices/{device}/workloads/{work}"),
    ("PUT", "/devices/{device}/workloads/{work}"),
    ("POST", "/workloads"), ("GET", "/workloads"), ("GET", "/workloads/{work}"),
    ("POST", "/workloads/{work}/cancel"),
    ("GET", "/healthz"), ("GET", "/metrics"), ("POST", "/oauth2/token"), ("POST", "/"),
    ("PUT", "/files/{file}"), ("GET", "/files/{file}"),
    ("DELETE", "/workloads"), ("PUT", "/capabilities"), ("GET", "/no/such/path"),
    ("GET", "/openapi.json"),
    ("POST", "/teams"), ("GET", "/teams"), ("POST", "/teams/{team}/members"),
    ("PUT", "/teams/{team}/members/{user}"), ("DELETE", "/teams/{team}/members/{user}"),
    ("GET", "/teams/{team}/balance"), ("GET", "/teams/{team}/ledger"),
    ("POST", "/teams/{team}/grants"),
    ("POST", "/credits/requests"), ("GET", "/credits/requests"),
    ("GET", "/credits/requests/{credit_request}"),
    ("POST", "/credits/requests/{credit_request}/approve"),
    ("POST", "/credits/requests/{credit_request}/deny"), ("GET", "/usage"),
    ("POST", "/reservations"), ("GET", "/reservations"), ("DELETE", "/reservations/{booking}"),
    ("POST", "/maintenance"), ("GET", "/maintenance"), ("DELETE", "/maintenance/{booking}"),
    ("GET", "/devices/{device}/windows"), ("PUT", "/devices/{device}/windows"),
    ("GET", "/devices/{device}/calendar"), ("GET", "/devices/{device}/calendar.ics"),
    ("POST", "/calendar-feed"), ("DELETE", "/calendar-feed"),
]
#: the stock application's paths (``--stock-protocol``), and two of ours it must not know
STOCK_ENDPOINTS = [
    ("POST", "/users"), ("POST", "/devices"), ("GET", "/devices"), ("GET", "/devices/{device}"),
    ("PUT", "/devices/{device}"), ("GET", "/devices/{device}/workload"),
    ("PUT", "/devices/{device}/workloads/{work}"), ("POST", "/workloads"),
    ("GET", "/workloads"), ("GET", "/workloads/{work}"), ("GET", "/capabilities"),
    ("POST", "/workloads/{work}/cancel"), ("GET", "/users"), ("GET", "/openapi.json"),
]
FIELDS = ["DeviceId", "Priority", "WorkloadName", "ContentSHA256", "DeviceName",
          "RefreshTimeout", "DeviceStatus", "DeviceConfigurationFileExtension", "Health",
          "Outcome", "ErrorMessage", "ErrorKind", "PartialResults", "DeviceSeconds",
          "ProgramsDone", "Email", "FullName", "Groups", "Label", "UserId", "AuthFlow",
          "AuthParameters", "ChallengeName", "ChallengeResponses", "Session", "AccessToken",
          "PreviousPassword", "ProposedPassword", "CurrentWork", "Reason", "Simulated",
          "USERNAME", "PASSWORD", "REFRESH_TOKEN", "NEW_PASSWORD", "work_id",
          "programs_done", "programs_total", "Name", "Scheduler", "User", "Role",
          "IsDefault", "Seconds", "Note", "Team", "Justification", "Estimate", "Device",
          "Start", "End", "Force", "Windows", "Day"]
QUERY = ["Limit", "Status", "ExclusiveStartKeyJson", "WaitSeconds", "Seen", "Holding",
         "CancelWork", "UserId", "AccountId", "DeviceId", "Expires", "Signature", "By",
         "From", "To", "Team", "State", "Device", "Feed"]
TARGETS = ["AWSCognitoIdentityProviderService." + a for a in
           ("InitiateAuth", "RespondToAuthChallenge", "ChangePassword", "SignUp")]
#: raw JSON texts a serializer never writes, spliced in where a marker string stands
RAW = ['"\\ud800"', '"a\\udfffb"', '"\\udbff\\udc00\\ud800"', "NaN", "Infinity",
       "-Infinity", "1e400", "-1e999", "1e308", "1" + "0" * 400, "9" * 5000, "1e20",
       "-0.0", "123456789012345678901234567890", '"\\u0000"', '"²"', '"\u00e9\u4e2d"']
MARK = "\x00raw{}\x00"
#: query values and path segments: numbers int() or float() misread, plain junk, and NULs
#: (which no PostgreSQL text holds)
ODD = ["²", "٣", "1" * 5000, "-1", "1e400", "nan", "inf", "0", "100", "101", "é", "%",
       "true", "TRUE", "{", '{"WorkId": "x", "CreatedAt": 1e20}', "[" * 40, "..", "%ff",
       "a" * 300, "\u4e2d\u6587", "ONLINE", "READY", "DONE", "\x00", "id\x00"]

text = st.text(max_size=40)  # no lone surrogates: those go in through RAW
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                   st.floats(allow_nan=False, allow_infinity=False), text,
                   st.sampled_from(ODD), st.sampled_from(range(len(RAW))).map(MARK.format))
json_value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), text), inner, max_size=5)),
    max_leaves=12)


def to_json(value: Any) -> str:
    raw = json.dumps(value)  # a bigger int than JSON doubles hold is fine: sent as written
    return re.sub(r'"\\u0000raw(\d+)\\u0000"', lambda m: RAW[int(m.group(1))], raw)


@st.composite
def bodies(draw: st.DrawFn, template: dict) -> bytes:
    """A mostly valid body with fuzzed fields, random JSON, deep nesting or junk bytes."""
    kind = draw(st.sampled_from(["template", "template", "template", "json", "deep", "bytes",
                                 "empty", "form"]))
    if kind == "template":
        body = {k: v for k, v in template.items() if draw(st.booleans()) or len(template) < 2}
        body.update(draw(st.dictionaries(st.sampled_from(FIELDS + list(template)), json_value,
                                         max_size=3)))
        return to_json(body).encode()
    if kind == "json":
        return to_json(draw(json_value)).encode()
    if kind == "deep":
        n = draw(st.sampled_from([31, 33, 200, 5000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"Health":', "}"), ('{"a":[', "]}")]))
        return (opener * n + "1" + closer * n).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "form":
        fields = draw(st.dictionaries(st.sampled_from(["grant_type", "client_id",
                                                       "client_secret", "scope"]),
                                      st.one_of(text, st.sampled_from(["client_credentials"])),
                                      max_size=3))
        return urlencode(fields).encode()
    return b""


def segment(draw: st.DrawFn, real: list[str]) -> str:
    """One path segment: a real id most of the time, else odd or random text."""
    raw = draw(st.one_of(st.sampled_from(real[:1]), st.sampled_from(real[:1]),
                         st.sampled_from(real), st.sampled_from(ODD), text.filter(bool)))
    if raw in ("%ff",):
        return raw  # invalid UTF-8 once decoded
    return quote(raw, safe="")


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(QUERY), text),
                                    st.one_of(st.sampled_from(ODD), text)), max_size=4))
    pairs = [(k, "0" if k == "WaitSeconds" and _waits(v) else v) for k, v in pairs]
    query = urlencode(pairs)
    if draw(st.integers(0, 9)) == 0:
        query += "&" + draw(st.sampled_from(["Limit=%ed%a0%80", "%ff=%fe", "Limit=%b2",
                                             "Expires=%C2%B2&Signature=%C3%A9", "=", "&&"]))
    return query


def _waits(value: str) -> bool:
    """A WaitSeconds the service would hold the request for (the fuzz does not wait)."""
    try:
        return float(value) > 0
    except ValueError:
        return False


@st.composite
def headers(draw: st.DrawFn, method: str, path: str) -> dict[str, str]:
    latin = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                  exclude_characters="\x7f"), max_size=60)
    out = {"Content-Type": draw(st.sampled_from(
        ["application/json", "application/json", "application/x-amz-json-1.1",
         "application/x-www-form-urlencoded", "text/plain; charset=latin-1", "*/*"]))}
    if path == "/":
        out["X-Amz-Target"] = draw(st.one_of(st.sampled_from(TARGETS), latin))
    for name in draw(st.lists(st.sampled_from(["Idempotency-Key", "Accept", "X-Amz-Target",
                                               "Accept-Encoding", "X-Forwarded-For"]),
                              max_size=2)):
        out[name] = draw(latin).strip()
    return out


# -- who sends it, and what it may change ------------------------------------------------
@dataclass
class Target:
    service: QueueService
    world: World
    ids: dict[str, list[str]]
    bearer: dict[str, str | None]
    conn: http.client.HTTPConnection
    db: Database  # the service's database, read by ``snapshot``
    stock: bool = False

    def send(self, method: str, url: str, body: bytes, head: dict[str, str]) -> tuple[
            int, bytes, bool]:
        try:
            self.conn.request(method, url, body=body, headers=head)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # the next request opens a new connection
            raise
        if resp.will_close:
            self.conn.close()
        return resp.status, data, resp.will_close

    def snapshot(self) -> str:
        """A digest of every table but the records of any call: ``devices.last_seen`` and
        ``api_keys.last_used`` (written once a minute per key, refused requests included),
        in the order of each table's primary key (queue_sequence: its one row)."""
        digest = hashlib.sha256()
        with self.db.reading() as conn:
            for table in sorted(metadata.tables.values(), key=lambda t: t.name):
                kept = [c.name for c in table.columns if (table.name, c.name) not in UNTRACKED]
                order = ", ".join(c.name for c in table.primary_key.columns) or kept[0]
                rows = conn.execute(f"SELECT {', '.join(kept)} FROM {table.name} "
                                    f"ORDER BY {order}")
                for row in rows:
                    digest.update(repr((table.name, [row[i] for i in range(len(kept))]))
                                  .encode())
        return digest.hexdigest()


#: columns any request may write, refused or not (see Target.snapshot)
UNTRACKED = {("devices", "last_seen"), ("api_keys", "last_used")}


def make_target(data_dir: Path, *, stock: bool, **options: Any) -> Target:
    service = start_queue_service(data_dir, **({"stock_protocol": True} if stock else {}),
                                  **options)
    world = World(service)
    device = world.device()
    user, user_id = world.user()
    victim_device = world.device("victim")
    _victim, victim_id = world.user()
    work = [submit(user, device.id), submit(user, device.id, data=None)]
    if not stock:
        key = world.admin.post("/api-keys", json={"UserId": victim_id}).json()["KeyId"]
        team = world.admin.post("/teams", json={"Name": "fuzzers", "Scheduler": user_id}).json()
        teams = [team["TeamId"], team["Name"]]
        requests = [user.post("/credits/requests", json={
            "Team": team["TeamId"], "Seconds": 60, "Justification": "fuzz"}).json()["RequestId"]]
    else:
        key = "no-key"
        teams = ["no-team"]
        requests = ["no-request"]
    ids = {"device": [device.id, victim_device.id], "victim_device": [victim_device.id],
           "victim_user": [victim_id, "nobody@lab.test"], "victim_key": [key],
           "work": work, "user": [user_id], "team": teams, "credit_request": requests,
           "booking": [str(uuid.uuid4())],
           "file": [f"workloads/{w}" for w in work] + [f"results/{work[0]}",
                                                       f"configs/{device.id}"]}
    port = urlsplit(service.root).port
    return Target(service, world, ids, {
        "admin": service.admin_key, "user": user.token, "device": device.api.token,
        "none": None, "junk": None}, http.client.HTTPConnection("127.0.0.1", port, timeout=30),
        Database(service.database_target), stock)


def serve_target(tmp_path_factory: pytest.TempPathFactory, *, stock: bool,
                 **options: Any) -> Iterator[Target]:
    t = make_target(tmp_path_factory.mktemp("fuzzstock" if stock else "fuzz"), stock=stock,
                    **options)
    yield t
    t.conn.close()
    t.db.close()
    t.service.stop()


@pytest.fixture(scope="module", params=DATABASES)
def target(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from serve_target(tmp_path_factory, stock=False,
                            **engine_options(request.param, request))


@pytest.fixture(scope="module", params=DATABASES)
def stock_target(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from serve_target(tmp_path_factory, stock=True,
                            **engine_options(request.param, request))


#: paths whose usual caller is an admin (the other callers are drawn too, less often)
ADMIN_PATHS = {"/users", "/devices", "/metrics"}
TEMPLATES = {
    "/users": {"Email": "fuzz@lab.test", "FullName": "F", "Groups": []},
    "/api-keys": {"Label": "k", "UserId": "x"},
    "/devices": {"DeviceName": "d", "RefreshTimeout": 60},
    "/workloads": {"DeviceId": "x", "Priority": "LOW", "WorkloadName": "w"},
    "/teams": {"Name": "t", "Scheduler": "x"},
    "/teams/{team}/members": {"User": "x", "Role": "user"},
    "/teams/{team}/members/{user}": {"Role": "scheduler", "IsDefault": True},
    "/teams/{team}/grants": {"Seconds": 60, "Note": "n"},
    "/credits/requests": {"Team": "fuzzers", "Seconds": 60, "Justification": "j",
                          "Estimate": {"Seconds": 1}},
    "/credits/requests/{credit_request}/approve": {"Seconds": 1, "Note": "n"},
    "/credits/requests/{credit_request}/deny": {"Note": "n"},
    "/reservations": {"Device": "x", "Team": "t", "Start": "2030-01-01T00:00:00Z",
                      "End": "2030-01-01T01:00:00+01:00", "Note": "n"},
    "/maintenance": {"Device": "x", "Start": "2030-01-01T00:00:00Z",
                     "End": "2030-01-01T01:00:00Z", "Reason": "r", "Force": True},
    "/devices/{device}/windows": {"Windows": [{"Day": "Mon", "Start": "18:00",
                                               "End": "24:00"}]},
    "device": {"DeviceStatus": "ONLINE", "DeviceConfigurationFileExtension": "json",
               "Health": {"CurrentWork": {"work_id": "x", "programs_done": 1,
                                          "programs_total": 2}}, "DeviceName": "n"},
    "work": {"Outcome": "FAILED", "ErrorMessage": "m", "ErrorKind": "k",
             "DeviceSeconds": 1.5, "ProgramsDone": 1, "PartialResults": False},
    "/": {"AuthFlow": "USER_PASSWORD_AUTH",
          "AuthParameters": {"USERNAME": "admin@localhost", "PASSWORD": "x" * 12},
          "ChallengeName": "NEW_PASSWORD_REQUIRED", "AccessToken": "x",
          "PreviousPassword": "x" * 9, "ProposedPassword": "y" * 9},
}


@st.composite
def fuzzed(draw: st.DrawFn, target: Target, endpoints: list) -> tuple:
    method, template = draw(st.sampled_from(endpoints))
    path = re.sub(r"\{(\w+)\}", lambda m: (
        draw(st.sampled_from(target.ids["file"])) if m.group(1) == "file"
        and draw(st.booleans()) else segment(draw, target.ids[m.group(1)])), template)
    key = ("work" if template.endswith("{work}") and template.startswith("/devices")
           else "device" if template == "/devices/{device}" else template)
    body = draw(bodies(TEMPLATES.get(key, {})))
    natural = ("device" if template.startswith("/devices/{device}") and method != "PATCH"
               and not template.endswith(("/windows", "/calendar", "/calendar.ics"))
               else "admin" if template in ADMIN_PATHS or "victim" in template else "user")
    caller = draw(st.one_of(st.just(natural), st.just(natural),
                            st.sampled_from(list(target.bearer))))
    head = draw(headers(method, template))
    token = target.bearer[caller]
    if token is not None:
        head["Authorization"] = f"Bearer {token}" if draw(st.booleans()) else token
    elif caller == "junk":
        head["Authorization"] = draw(st.one_of(
            st.sampled_from(["Bearer ", "Bearer a.b.c", "Basic !!!", "Basic Zm9vOmJhcg==",
                             "qq_" + "x" * 40, "Bearer eyJhbGciOiJub25lIn0.e30."]),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=80)))
    query = draw(queries())
    if template.startswith("/files/") and draw(st.booleans()):
        query = query + "&" * bool(query) + "Expires=9999999999&Signature=" + "0" * 64
    return method, path + ("?" + query if query else ""), body, head, template


def check(target: Target, request: tuple) -> None:
    method, url, body, head, template = request
    before = target.snapshot()
    status, data, closing = target.send(method, url, body, head)
    shown = f"{method} {url[:200]} {body[:200]!r} {head} -> {status} {data[:300]!r}"
    assert not closing, "the service closed the connection: " + shown
    if status < 400:
        return
    answer = json.loads(data) if data else None
    if target.stock and status == 500:  # the stock handler's answer for an unknown id
        assert list(answer) == ["ErrorMessage"] and "Cannot destructure" in \
            answer["ErrorMessage"], shown
    else:
        assert status < 500, shown
    if template == "/":
        assert set(answer) == {"__type", "message"}, shown
    elif template == "/oauth2/token" and "error" in answer:  # OAuth2's shape (else ours: 413)
        assert isinstance(answer["error"], str), shown
    elif target.stock and (answer is None or set(answer) == {"message"}):
        pass  # the stock gateway's 403/400 and a stock handler's bodiless 404
    else:
        assert isinstance(answer.get("ErrorMessage"), str) and answer["ErrorMessage"], shown
        assert target.stock or isinstance(answer.get("ErrorKind"), str), shown
    assert target.snapshot() == before, "a refused request changed the database: " + shown


def fuzz(examples: int) -> settings:
    """A fixed seed (derandomize), no example database: every run sends the same requests.
    ``QICK_FUZZ_SCALE`` multiplies the example counts for a longer run (e.g. 5)."""
    scale = float(os.environ.get("QICK_FUZZ_SCALE", "1"))
    return settings(derandomize=True, database=None, deadline=None, print_blob=False,
                    max_examples=max(1, int(examples * scale)),
                    suppress_health_check=list(HealthCheck))


def test_fuzz_every_endpoint_as_every_caller(target: Target):
    @fuzz(600)
    @given(fuzzed(target, ENDPOINTS))
    def run(request: tuple) -> None:
        check(target, request)
    run()
    assert target.world.admin.get("/devices").status_code == 200


def test_fuzz_the_stock_protocol(stock_target: Target):
    @fuzz(200)
    @given(fuzzed(stock_target, STOCK_ENDPOINTS))
    def run(request: tuple) -> None:
        check(stock_target, request)
    run()


def test_openapi_describes_every_route(target: Target):
    """``/openapi.json`` lists each path and method the service serves, with the error
    shape; under ``--stock-protocol`` it does not exist (the stock gateway's 403)."""
    from queueservice.app import api_routes, root_routes
    resp = target.world.admin.session.get(target.service.root + "/openapi.json", timeout=30)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    served = {(re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path), m.lower())
              for r in api_routes() + root_routes() for m in r.methods if m != "HEAD"}
    described = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert described == served
    assert doc["paths"]["/workloads"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/oauth2/token"]["post"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["ErrorMessage", "ErrorKind"]


def test_openapi_is_absent_under_the_stock_protocol(stock_target: Target):
    resp = stock_target.world.admin.session.get(stock_target.service.root + "/openapi.json",
                                                timeout=30)
    assert resp.status_code == 403 and resp.json() == {"message": "Missing Authentication Token"}

"""Usage reports from the ledger: the store on each engine (SQLite file, PostgreSQL), with
lines written the one way lines are written (``facility.append_line``), and ``GET /usage``
over raw HTTP against the real service. Charges net of their refunds, the board seconds of
the work billed, reservations and sessions as their own columns; per team, user, device
and month (UTC); admins see every line, a scheduler their teams', a user their own."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cloudqueue.errors import BadRequest, NotFound
from queueservice.db import Database
from queueservice.facility import append_line
from queueservice.identities import Principal
from queueservice.usage import COLUMNS, UsageStore, month_of, totals
from tests.server.api import World, assert_error


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
               .timestamp() * 1000)


NOV, DEC = ms("2026-11-10T12:00:00"), ms("2026-12-01T00:00:00")


class Facility:
    """Rows the ledger's lines point at, written straight into the store."""

    def __init__(self, db: Database):
        self.db = db

    def user(self, admin: bool = False) -> Principal:
        user_id = str(uuid.uuid4())
        email = f"u{user_id[:8]}@lab.test"
        groups = '["Admin"]' if admin else "[]"
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO users (user_id, email, groups, created_at) "
                         "VALUES (?, ?, ?, ?)", (user_id, email, groups, NOV))
        return Principal("user", user_id, email, ("Admin",) if admin else ())

    def team(self, name: str, members: dict[Principal, str]) -> str:
        team_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO teams (team_id, name, created_by, created_at) "
                         "VALUES (?, ?, 'admin', ?)", (team_id, name, NOV))
            for who, role in members.items():
                conn.execute("INSERT INTO team_members (team_id, user_id, role, added_at) "
                             "VALUES (?, ?, ?, ?)", (team_id, who.id, role, NOV))
        return team_id

    def device(self, name: str) -> str:
        device_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO devices (device_id, name, client_id, secret_hash, "
                         "created_at) VALUES (?, ?, ?, 'x', ?)",
                         (device_id, name, device_id, NOV))
        return device_id

    def work(self, device_id: str, owner: Principal, board_seconds: float) -> str:
        work_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO workloads (work_id, device_id, account_id, priority, "
                         "status, created_at, device_seconds) VALUES (?, ?, ?, 'MEDIUM', "
                         "'DONE', ?, ?)", (work_id, device_id, owner.id, NOV, board_seconds))
        return work_id

    def booking(self, device_id: str, team_id: str) -> str:
        booking_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO bookings (booking_id, device_id, kind, team_id, "
                         "start_at, end_at, created_by, created_at) VALUES "
                         "(?, ?, 'reservation', ?, ?, ?, 'pi', ?)",
                         (booking_id, device_id, team_id, DEC, DEC + 3_600_000, NOV))
        return booking_id

    def session(self, device_id: str, owner: Principal) -> str:
        session_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO sessions (session_id, device_id, user_id, opened_at, "
                         "max_seconds, idle_seconds) VALUES (?, ?, ?, ?, 600, 60)",
                         (session_id, device_id, owner.id, NOV))
        return session_id

    def line(self, team_id: str, kind: str, seconds: float, who: Principal, at: int,
             **refs: str) -> None:
        with self.db.transaction() as conn:
            append_line(conn, team_id, kind, seconds, who.id, None, at, **refs)


@pytest.fixture
def lab(db: Database) -> dict:
    """Two teams on two devices over two months: qubits (scheduler pi, user student) and
    optics (scheduler other); an admin; every kind of usage line, and grants."""
    f = Facility(db)
    admin, pi, student, other = f.user(admin=True), f.user(), f.user(), f.user()
    qubits = f.team("qubits", {pi: "scheduler", student: "user"})
    optics = f.team("optics", {other: "scheduler"})
    alpha, beta = f.device("alpha"), f.device("beta")
    f.line(qubits, "grant", 10_000, admin, NOV)
    f.line(optics, "grant", 10_000, admin, NOV)
    # student: two runs on alpha (price 2/s), one of them failed by the board and refunded
    ok, failed = f.work(alpha, student, 30.0), f.work(alpha, student, 5.0)
    f.line(qubits, "charge", -60, student, NOV + 1, work_id=ok, device_id=alpha)
    f.line(qubits, "charge", -10, student, NOV + 2, work_id=failed, device_id=alpha)
    f.line(qubits, "refund", 10, student, NOV + 3, work_id=failed, device_id=alpha)
    # pi: a timeslot on beta paid, a session on alpha, a run on beta in December
    slot = f.booking(beta, qubits)
    f.line(qubits, "reservation", -3600, pi, NOV + 4, booking_id=slot)
    f.line(qubits, "session", -120, pi, NOV + 5, session_id=f.session(alpha, pi))
    f.line(qubits, "charge", -7, pi, DEC + 10, work_id=f.work(beta, pi, 7.0))
    # other (optics): a slot booked and cancelled (refunded), one run on beta
    slot2 = f.booking(beta, optics)
    f.line(optics, "reservation", -1800, other, NOV + 6, booking_id=slot2)
    f.line(optics, "reservation_refund", 1800, other, NOV + 7, booking_id=slot2)
    f.line(optics, "charge", -4, other, NOV + 8, work_id=f.work(beta, other, 4.0),
           device_id=beta)
    return {"store": UsageStore(db), "admin": admin, "pi": pi, "student": student,
            "other": other, "qubits": qubits, "optics": optics, "alpha": alpha, "beta": beta}


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: {c: r[c] for c in COLUMNS} for r in rows}


def row(charged=0.0, refunded=0.0, board=0.0, works=0, reservations=0.0,
        sessions=0.0) -> dict:
    spent = charged - refunded
    return {"charged": charged, "refunded": refunded, "spent": spent, "board_seconds": board,
            "workloads": works, "reservations": reservations, "sessions": sessions,
            "total": spent + reservations + sessions}


def test_per_team_charges_net_of_refunds_reservations_and_sessions_apart(lab):
    rows = lab["store"].report("team", lab["admin"])
    assert by_name(rows) == {
        "qubits": row(charged=77, refunded=10, board=37.0, works=2, reservations=3600,
                      sessions=120),
        "optics": row(charged=4, board=4.0, works=1, reservations=0),
    }
    assert [r["name"] for r in rows] == ["qubits", "optics"]  # the largest total first
    assert rows[0]["key"] == lab["qubits"]
    assert totals(rows)["total"] == 67 + 3600 + 120 + 4


def test_per_user_device_and_month(lab):
    store, admin = lab["store"], lab["admin"]
    users = {r["key"]: {c: r[c] for c in COLUMNS} for r in store.report("user", admin)}
    assert users == {lab["student"].id: row(charged=70, refunded=10, board=30.0, works=1),
                     lab["pi"].id: row(charged=7, board=7.0, works=1, reservations=3600,
                                       sessions=120),
                     lab["other"].id: row(charged=4, board=4.0, works=1)}
    devices = by_name(store.report("device", admin))
    # a line without its device takes its work's, booking's or session's
    assert devices == {"alpha": row(charged=70, refunded=10, board=30.0, works=1,
                                    sessions=120),
                       "beta": row(charged=11, board=11.0, works=2, reservations=3600)}
    months = store.report("month", admin)
    assert [r["key"] for r in months] == ["2026-11", "2026-12"]
    assert months[1]["spent"] == 7 and months[0]["total"] == 60 + 3600 + 120 + 4


def test_several_groupings_from_one_read_add_up_as_each_alone(lab):
    store, pi = lab["store"], lab["pi"]
    for caller in (lab["admin"], pi):
        together = store.reports(("user", "device", "month", "team"), caller)
        assert together == {by: store.report(by, caller) for by in together}
    mine = store.reports(("device", "user"), pi, team_ref="qubits", start=DEC)
    assert by_name(mine["device"]) == {"beta": row(charged=7, board=7.0, works=1)}
    assert [r["key"] for r in mine["user"]] == [pi.id]
    with pytest.raises(BadRequest, match="not 'week'"):
        store.reports(("user", "week"), pi)


def test_from_and_to_bound_the_lines_times(lab):
    store, admin = lab["store"], lab["admin"]
    november = store.report("month", admin, start=ms("2026-11-01T00:00:00"), end=DEC)
    assert [r["key"] for r in november] == ["2026-11"]
    december = store.report("team", admin, start=DEC)
    assert by_name(december) == {"qubits": row(charged=7, board=7.0, works=1)}
    assert store.report("team", admin, end=NOV) == []
    with pytest.raises(BadRequest, match="To must be after From"):
        store.report("team", admin, start=DEC, end=DEC)
    with pytest.raises(BadRequest, match="team, user, device, month"):
        store.report("week", admin)


def test_a_scheduler_sees_their_teams_a_user_only_their_own(lab):
    store = lab["store"]
    assert set(by_name(store.report("team", lab["pi"]))) == {"qubits"}
    assert by_name(store.report("team", lab["student"])) == {
        "qubits": row(charged=70, refunded=10, board=30.0, works=1)}
    assert [r["key"] for r in store.report("user", lab["student"])] == [lab["student"].id]
    assert set(by_name(store.report("team", lab["other"]))) == {"optics"}
    mine = store.report("user", lab["pi"], team_ref="qubits")
    assert {r["key"] for r in mine} == {lab["pi"].id, lab["student"].id}
    with pytest.raises(NotFound, match="no team optics of yours"):
        store.report("team", lab["pi"], team_ref="optics")
    assert set(by_name(store.report("team", lab["admin"], team_ref=lab["optics"]))) == \
        {"optics"}


def test_months_are_utc():
    assert month_of(ms("2026-11-30T23:59:59")) == "2026-11"
    assert month_of(ms("2026-12-01T00:00:00")) == "2026-12"


def test_the_reports_months_are_utc_to_the_millisecond_on_each_engine(db: Database, lab):
    """The database names a line's month (each engine its own date function): the last
    millisecond of November is November's; a line naming no device is under "-"."""
    f = Facility(db)
    f.line(lab["optics"], "charge", -1, lab["other"], DEC - 1)
    f.line(lab["optics"], "charge", -2, lab["other"], DEC)
    optics = lab["store"].report("month", lab["admin"], team_ref="optics")
    assert [(r["key"], r["name"], r["charged"]) for r in optics] == [
        ("2026-11", "2026-11", 4 + 1), ("2026-12", "2026-12", 2)]
    assert month_of(DEC - 1) == "2026-11"
    devices = by_name(lab["store"].report("device", lab["admin"], team_ref="optics"))
    assert devices == {"beta": row(charged=4, board=4.0, works=1),
                       "-": row(charged=3, reservations=0)}


# -- GET /usage over HTTP ------------------------------------------------------------------



def test_usage_over_http_with_its_rules(world: World, team: dict):
    device = world.device()
    lines = [(team["student_id"], -12.0, "charge"), (team["pi_id"], -3.0, "charge"),
             (team["pi_id"], -50.0, "reservation")]
    database = Database(world.service.database_target)
    try:
        for user_id, seconds, kind in lines:
            with database.transaction() as conn:
                append_line(conn, team["id"], kind, seconds, user_id, None, NOV,
                            device_id=device.id)
    finally:
        database.close()
    answer = team["pi"].get("/usage", params={"By": "user", "Team": team["name"],
                                              "From": "2026-11", "To": "2026-12-01"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["By"], body["From"], body["To"]) == \
        ("user", "2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z")
    spent = {r["Key"]: (r["Spent"], r["Reservations"], r["Total"]) for r in body["Rows"]}
    assert spent == {team["student_id"]: (12.0, 0.0, 12.0),
                     team["pi_id"]: (3.0, 50.0, 53.0)}
    assert body["Total"]["Total"] == 65.0 and body["Total"]["Workloads"] == 0
    own = team["student"].get("/usage", params={"By": "device"}).json()
    assert [(r["Key"], r["Name"], r["Spent"]) for r in own["Rows"]] == \
        [(device.id, "qick", 12.0)]
    assert team["outsider"].get("/usage").json()["Rows"] == []
    hidden = team["outsider"].get("/usage", params={"Team": team["id"]})
    assert_error(hidden, 404, "not_found")
    for params, words in (({"By": "year"}, "By must be one of"),
                          ({"From": "last tuesday"}, "From must be a time in ISO 8601"),
                          ({"From": "2026-12", "To": "2026-11"}, "To must be after From")):
        assert words in assert_error(world.admin.get("/usage", params=params),
                                     400)["ErrorMessage"]

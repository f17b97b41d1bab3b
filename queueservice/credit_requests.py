"""Credit requests (issue 12, docs/facility.md), sync, no HTTP: a team's scheduler asks for
device-seconds with a justification (and, optionally, the estimate ``userclient estimate
--json`` printed); an admin approves (perhaps fewer seconds than asked) or denies, once.

States: ``pending`` -> ``approved`` | ``denied``, never back and never twice. Approving
writes the team's ``grant`` line (``facility.append_line``, its note naming the request)
in the same transaction as the state change; the change is a compare-and-set on
``state = 'pending'``, so of two admins deciding at once exactly one does (the other is
told who decided and when), and a request grants at most once.

Who sees what: admins every request; a scheduler their teams' requests; a plain ``user``
member none (IQM's rule: balances and credits are the schedulers'); a team the caller is
not in does not exist for them (``TeamStore``'s rule).
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from cloudqueue.errors import BadRequest, Conflict, Forbidden, NotFound
from queueservice import policy
from queueservice.db import Connection
from queueservice.facility import append_line
from queueservice.identities import Principal
from queueservice.teams import MAX_GRANT_SECONDS, SCHEDULER, Row, TeamStore

STATES = ("pending", "approved", "denied")
PENDING, APPROVED, DENIED = STATES
#: the attached estimate, as stored JSON, at most this many bytes (a request body is at
#: most ``ServiceLimits.max_json_bytes``, 64 KiB)
MAX_ESTIMATE_BYTES = 32 * 1024
MAX_JUSTIFICATION_CHARS = 2000
MAX_NOTE_CHARS = 500
NO_REQUEST_HINT = "check the id against `userclient credits requests`"


def grant_note(request_id: str) -> str:
    """The note of the grant line an approval writes (names the request)."""
    return f"credit request {request_id}"


class CreditRequestStore(TeamStore):
    """Credit requests, on ``TeamStore``'s rules of who sees and may act for a team."""

    def create(self, team_ref: str, seconds: float, justification: str,
               estimate: dict | None, now: int, *, caller: Principal) -> Row:
        """A new pending request by a scheduler of the team: the request's row."""
        if not 0 < seconds <= MAX_GRANT_SECONDS:
            raise BadRequest(f"Seconds must be more than 0 and at most {MAX_GRANT_SECONDS:.0f}"
                             f" device-seconds, not {seconds}")
        if not justification.strip():
            raise BadRequest("Justification is empty: say what the credits are for")
        stored = None
        if estimate is not None:
            stored = json.dumps(estimate, sort_keys=True)
            if len(stored.encode()) > MAX_ESTIMATE_BYTES:
                raise BadRequest(f"the Estimate is larger than {MAX_ESTIMATE_BYTES // 1024} KiB: "
                                 "attach what `userclient estimate --json` prints, not the "
                                 "workload itself")
        request_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            team = self._visible(conn, team_ref, caller)
            if self._role(conn, team, caller) != SCHEDULER:
                raise Forbidden(f"only a scheduler of team {team['name']} may request credits "
                                "for it" + (": an admin grants them directly (`userclient "
                                            "credits grant`)" if caller.is_admin else
                                            ": ask one of its schedulers"))
            conn.execute("INSERT INTO credit_requests (request_id, team_id, user_id, seconds, "
                         "justification, estimate, state, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (request_id, team["team_id"], caller.id, seconds, justification,
                          stored, PENDING, now))
            return _granted(conn, _request(conn, request_id))

    def requests(self, caller: Principal, *, state: str | None = None,
                 team_ref: str | None = None) -> list[Row]:
        """The requests the caller sees (admins: all; schedulers: their teams'), newest
        first, narrowed to ``state`` and ``team_ref`` when given."""
        _check_state(state)
        where, params = ["1 = 1"], []
        with self.db.reading() as conn:
            if team_ref is not None:
                team = self._accountable(conn, team_ref, caller, "see its credit requests")
                where.append("r.team_id = ?")
                params.append(team["team_id"])
            elif not caller.is_admin:
                where.append("r.team_id IN (SELECT team_id FROM team_members "
                             "WHERE user_id = ? AND role = ?)")
                params += [caller.id, SCHEDULER]
            if state is not None:
                where.append("r.state = ?")
                params.append(state)
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)} "
                "ORDER BY r.created_at DESC, r.request_id", params).fetchall()
            return [_granted(conn, dict(r)) for r in rows]

    def request(self, request_id: str, caller: Principal) -> Row:
        """One request (with its estimate) the caller sees."""
        with self.db.reading() as conn:
            row = _request(conn, request_id)
            self._may_see(conn, row, caller)
            return _granted(conn, row)

    def decide(self, request_id: str, approve: bool, now: int, *, caller: Principal,
               seconds: float | None = None, note: str | None = None) -> Row:
        """Approve (granting ``seconds``, default what was asked, at most that) or deny
        (``note`` says why) a pending request (admins only): the request's row, with
        ``granted`` (the grant line) when approved. A decided request is a Conflict."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may decide a credit request")
        if not approve and not (note or "").strip():
            raise BadRequest("a denial needs a Note saying why (the scheduler reads it)")
        with self.db.transaction() as conn:
            row = _request(conn, request_id)
            if seconds is not None and not 0 < seconds <= row["seconds"]:
                raise BadRequest(f"Seconds must be more than 0 and at most the "
                                 f"{row['seconds']:g} asked for, not {seconds:g}; to give "
                                 "more, grant it (`userclient credits grant`)")
            decided = conn.execute(
                "UPDATE credit_requests SET state = ?, decided_by = ?, decided_at = ?, "
                "decision_note = ? WHERE request_id = ? AND state = ?",
                (APPROVED if approve else DENIED, caller.id, now, note, request_id, PENDING))
            if decided.rowcount != 1:
                row = _request(conn, request_id)
                raise Conflict(f"credit request {request_id} was {row['state']} already, by "
                               f"{row['decided_by_email'] or row['decided_by']} at "
                               f"{policy.iso(row['decided_at'])}: a decision is final; ask "
                               "for a new request", kind="already_decided")
            if approve:
                append_line(conn, row["team_id"], "grant",
                            row["seconds"] if seconds is None else seconds, caller.id,
                            grant_note(request_id), now)
            return _granted(conn, _request(conn, request_id))

    def _may_see(self, conn: Connection, row: Row, caller: Principal) -> None:
        if caller.is_admin:
            return
        team = {"team_id": row["team_id"], "name": row["team_name"]}
        if self._role(conn, team, caller) != SCHEDULER:
            raise NotFound(f"no credit request {row['request_id']} of yours: "
                           f"{NO_REQUEST_HINT}")

    @staticmethod
    def _role(conn: Connection, team: Row, caller: Principal) -> str | None:
        r = conn.execute("SELECT role FROM team_members WHERE team_id = ? AND user_id = ?",
                         (team["team_id"], caller.id)).fetchone()
        return None if r is None else r["role"]


_SELECT = ("SELECT r.*, t.name AS team_name, u.email AS user_email, "
           "d.email AS decided_by_email FROM credit_requests r "
           "JOIN teams t ON t.team_id = r.team_id "
           "LEFT JOIN users u ON u.user_id = r.user_id "
           "LEFT JOIN users d ON d.user_id = r.decided_by")


def _request(conn: Connection, request_id: str) -> Row:
    r = conn.execute(f"{_SELECT} WHERE r.request_id = ?", (request_id,)).fetchone()
    if r is None:
        raise NotFound(f"no credit request {request_id}: {NO_REQUEST_HINT}")
    return dict(r)


def _granted(conn: Connection, row: Row) -> Row:
    """``row`` with ``granted``: the grant line its approval wrote (None: none)."""
    line = None
    if row["state"] == APPROVED:
        r = conn.execute("SELECT * FROM ledger WHERE team_id = ? AND kind = 'grant' AND "
                         "note = ?", (row["team_id"], grant_note(row["request_id"]))).fetchone()
        line = None if r is None else dict(r)
    return {**row, "granted": line}


def _check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise BadRequest(f"State must be one of {', '.join(STATES)}, not {state[:40]!r}")


def estimate_of(row: Row) -> Any:
    """The attached estimate, parsed (None: none)."""
    return None if row["estimate"] is None else json.loads(row["estimate"])

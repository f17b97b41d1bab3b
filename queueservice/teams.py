"""Teams, their members' roles and the credit ledger (issue 12, docs/facility.md), sync, no
HTTP.

A team (IQM's "Team", a facility's project) has members; a member is a ``scheduler`` (the
PI: manages members, sees the balance and the ledger) or a ``user`` (runs work; sees
neither: IQM's rule). Admins (facility staff) create teams and grant credits. A person may
be in several teams; one of them is their default (``is_default``: the first team they
join, until they choose another).

A team's balance is the sum of its ledger's lines, in device-seconds. The ledger is
append-only: a line is never changed or deleted, so every balance is explained line by
line. This slice writes ``grant`` lines (admins); charges and refunds come with prices.

Who sees what: an admin sees every team; a member sees the teams they are in; anyone else
is told there is no such team (existence hidden, as for another user's API key).
"""
from __future__ import annotations

import uuid
from typing import Any

from cloudqueue.errors import BadRequest, Conflict, Forbidden, NotFound
from queueservice.db import Connection, Database
from queueservice import facility
from queueservice.facility import append_line, lock_team
from queueservice.identities import Principal

Row = dict[str, Any]
ROLES = ("scheduler", "user")
SCHEDULER, USER = ROLES
#: the largest grant, in device-seconds (about 31 years of one board)
MAX_GRANT_SECONDS = 1e9
NO_TEAM_HINT = "check the TeamId or name against `userclient team list`"
NO_USER_HINT = "check it against the list of users (`userclient users`)"


class TeamStore:
    def __init__(self, db: Database):
        self.db = db

    # -- reading -----------------------------------------------------------------------
    def teams(self, caller: Principal) -> list[Row]:
        """The teams the caller sees (an admin: all), oldest first, each with ``members``
        (their UserId, e-mail, role, is_default, oldest first)."""
        with self.db.reading() as conn:
            if caller.is_admin:
                rows = conn.execute("SELECT * FROM teams ORDER BY created_at, team_id")
            else:
                rows = conn.execute(
                    "SELECT t.* FROM teams t JOIN team_members m ON m.team_id = t.team_id "
                    "WHERE m.user_id = ? ORDER BY t.created_at, t.team_id", (caller.id,))
            return [self._with_members(conn, dict(r)) for r in rows.fetchall()]

    def team(self, ref: str, caller: Principal) -> Row:
        """One team (by TeamId or name) the caller sees, with its ``members``."""
        with self.db.reading() as conn:
            return self._with_members(conn, self._visible(conn, ref, caller))

    def balance(self, ref: str, caller: Principal) -> Row:
        """The team's row with ``balance`` (the sum of its ledger, device-seconds) and
        ``lines`` (how many): its schedulers and admins only."""
        with self.db.reading() as conn:
            team = self._accountable(conn, ref, caller, "see its balance")
            lines = conn.execute("SELECT COUNT(*) FROM ledger WHERE team_id = ?",
                                 (team["team_id"],)).fetchone()[0]
            return {**team, "balance": facility.balance(conn, team["team_id"]),
                    "lines": int(lines)}

    def ledger(self, ref: str, caller: Principal) -> tuple[Row, list[Row]]:
        """(the team, its ledger lines oldest first, each with ``balance_after``, the
        running sum): its schedulers and admins only."""
        with self.db.reading() as conn:
            team = self._accountable(conn, ref, caller, "see its ledger")
            rows = conn.execute("SELECT * FROM ledger WHERE team_id = ? ORDER BY entry_id",
                                (team["team_id"],)).fetchall()
        return team, [dict(r) for r in rows]

    def ledger_page(self, ref: str, caller: Principal, *, before: int | None = None,
                    limit: int = 50) -> tuple[Row, list[Row], bool]:
        """(the team, at most ``limit`` of its ledger lines newest first, those before
        entry ``before`` when given, whether older ones remain): its schedulers and admins
        only. Each line has ``email`` (who) and ``device_name`` (its device, or its work's
        or timeslot's). One bounded read of the ``ledger_team`` index (the portal's page)."""
        params: list[Any] = []
        with self.db.reading() as conn:
            team = self._accountable(conn, ref, caller, "see its ledger")
            params.append(team["team_id"])
            older = ""
            if before is not None:
                older = " AND l.entry_id < ?"
                params.append(before)
            rows = conn.execute(
                "SELECT l.*, u.email, COALESCE(l.device_id, w.device_id, b.device_id) AS "
                "line_device, dv.name AS device_name FROM ledger l "
                "LEFT JOIN users u ON u.user_id = l.user_id "
                "LEFT JOIN workloads w ON w.work_id = l.work_id "
                "LEFT JOIN bookings b ON b.booking_id = l.booking_id "
                "LEFT JOIN devices dv ON dv.device_id = "
                "COALESCE(l.device_id, w.device_id, b.device_id) "
                f"WHERE l.team_id = ?{older} ORDER BY l.entry_id DESC LIMIT {int(limit) + 1}",
                params).fetchall()
        lines = [dict(r) for r in rows]
        return team, lines[:limit], len(lines) > limit

    # -- admins ------------------------------------------------------------------------
    def create(self, name: str, now: int, *, caller: Principal,
               scheduler: str | None = None) -> Row:
        """A new team (admins only); ``scheduler`` (UserId or e-mail): its first member,
        as its scheduler. A name already taken is a Conflict."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may create a team: ask one")
        if "/" in name:
            raise BadRequest(f"a team name cannot contain '/' (paths name the team): "
                             f"choose another than {name[:60]!r}")
        team_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM teams WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"there is a team named {name} already: choose another name "
                               "(`userclient team list` shows them)", kind="team_exists")
            first = _user(conn, scheduler) if scheduler is not None else None
            conn.execute("INSERT INTO teams (team_id, name, created_by, created_at) "
                         "VALUES (?, ?, ?, ?)", (team_id, name, caller.id, now))
            if first is not None:
                _insert_member(conn, team_id, first["user_id"], SCHEDULER, now)
            return self._with_members(conn, _team(conn, team_id))

    def grant(self, ref: str, seconds: float, note: str, now: int, *,
              caller: Principal) -> Row:
        """A ``grant`` line of ``seconds`` (> 0) with its note (admins only): the line,
        with ``balance`` (the team's balance after it)."""
        if not caller.is_admin:
            raise Forbidden("only an admin (facility staff) may grant credits: a scheduler "
                            "asks an admin for them")
        if not 0 < seconds <= MAX_GRANT_SECONDS:
            raise BadRequest(f"Seconds must be more than 0 and at most {MAX_GRANT_SECONDS:.0f} "
                             f"device-seconds, not {seconds}")
        with self.db.transaction() as conn:
            team = _team(conn, ref)
            entry = append_line(conn, team["team_id"], "grant", seconds, caller.id, note, now)
        return {**entry, "balance": entry["balance_after"], "name": team["name"]}

    # -- members (admins and the team's schedulers) -------------------------------------
    def add_member(self, ref: str, user_ref: str, role: str, now: int, *,
                   caller: Principal) -> Row:
        """Add a user to the team with ``role``; the first team a user joins becomes their
        default. Someone already in it is a Conflict (change the role instead)."""
        _check_role(role)
        with self.db.transaction() as conn:
            team = self._accountable(conn, ref, caller, "add members")
            lock_team(conn, team["team_id"])
            member = _user(conn, user_ref)
            if _membership(conn, team["team_id"], member["user_id"]) is not None:
                raise Conflict(f"{member['email']} is in team {team['name']} already: change "
                               "their role with `userclient team role`", kind="member_exists")
            _insert_member(conn, team["team_id"], member["user_id"], role, now)
            return self._with_members(conn, team)

    def change_member(self, ref: str, user_ref: str, *, caller: Principal,
                      role: str | None = None, is_default: bool | None = None) -> Row:
        """Change a member's role, or make this team their default (the member themself,
        a scheduler of the team, or an admin). The team's last scheduler stays one."""
        if role is not None:
            _check_role(role)
        own = role is None and user_ref in (caller.id, caller.email)
        with self.db.transaction() as conn:
            team = (self._visible(conn, ref, caller) if own
                    else self._accountable(conn, ref, caller, "change members"))
            lock_team(conn, team["team_id"])
            member = _user(conn, user_ref)
            if _membership(conn, team["team_id"], member["user_id"]) is None:
                raise NotFound(f"{member['email']} is not in team {team['name']}: add them "
                               "with `userclient team add`")
            if role is not None:
                if role != SCHEDULER:
                    _keep_a_scheduler(conn, team, member)
                conn.execute("UPDATE team_members SET role = ? WHERE team_id = ? AND "
                             "user_id = ?", (role, team["team_id"], member["user_id"]))
            if is_default:
                _make_default(conn, team["team_id"], member["user_id"])
            elif is_default is False:
                raise BadRequest("IsDefault can only be set to true: make another team the "
                                 "default instead")
            return self._with_members(conn, team)

    def remove_member(self, ref: str, user_ref: str, *, caller: Principal) -> Row:
        """Take a user out of the team (a scheduler of it or an admin). Their work already
        charged stays in the ledger. The team's last scheduler stays."""
        with self.db.transaction() as conn:
            team = self._accountable(conn, ref, caller, "remove members")
            lock_team(conn, team["team_id"])
            member = _user(conn, user_ref)
            was = _membership(conn, team["team_id"], member["user_id"])
            if was is None:
                raise NotFound(f"{member['email']} is not in team {team['name']}: "
                               "`userclient team list` shows its members")
            _keep_a_scheduler(conn, team, member)
            conn.execute("DELETE FROM team_members WHERE team_id = ? AND user_id = ?",
                         (team["team_id"], member["user_id"]))
            if was["is_default"]:  # another of their teams becomes the default
                other = conn.execute(
                    "SELECT team_id FROM team_members WHERE user_id = ? "
                    "ORDER BY added_at, team_id", (member["user_id"],)).fetchone()
                if other is not None:
                    _make_default(conn, other["team_id"], member["user_id"])
            return self._with_members(conn, team)

    # -- who may ---------------------------------------------------------------------------
    def _visible(self, conn: Connection, ref: str, caller: Principal) -> Row:
        """The team if the caller sees it (admin or member), else NotFound."""
        team = _team(conn, ref)
        if caller.is_admin or _membership(conn, team["team_id"], caller.id) is not None:
            return team
        raise NotFound(f"no team {ref} of yours: {NO_TEAM_HINT}")

    def _accountable(self, conn: Connection, ref: str, caller: Principal, action: str) -> Row:
        """The team if the caller is an admin or one of its schedulers; a ``user`` member
        is refused (IQM's rule), anyone else told there is no such team."""
        team = self._visible(conn, ref, caller)
        if not caller.is_admin and _membership(conn, team["team_id"],
                                               caller.id)["role"] != SCHEDULER:
            raise Forbidden(f"only a scheduler of team {team['name']} (or an admin) may "
                            f"{action}: ask one of its schedulers")
        return team

    def _with_members(self, conn: Connection, team: Row) -> Row:
        rows = conn.execute(
            "SELECT m.user_id, u.email, m.role, m.is_default, m.added_at FROM team_members m "
            "JOIN users u ON u.user_id = m.user_id WHERE m.team_id = ? "
            "ORDER BY m.added_at, m.user_id", (team["team_id"],)).fetchall()
        return {**team, "members": [dict(r) for r in rows]}


# -- rows --------------------------------------------------------------------------------
def _team(conn: Connection, ref: str) -> Row:
    r = conn.execute("SELECT * FROM teams WHERE team_id = ? OR name = ?", (ref, ref)).fetchone()
    if r is None:
        raise NotFound(f"no team {ref}: {NO_TEAM_HINT}")
    return dict(r)


def _user(conn: Connection, ref: str) -> Row:
    r = conn.execute("SELECT user_id, email FROM users WHERE user_id = ? OR email = ?",
                     (ref, ref)).fetchone()
    if r is None:
        raise NotFound(f"no user {ref}: {NO_USER_HINT}")
    return dict(r)


def _membership(conn: Connection, team_id: str, user_id: str) -> Row | None:
    r = conn.execute("SELECT * FROM team_members WHERE team_id = ? AND user_id = ?",
                     (team_id, user_id)).fetchone()
    return None if r is None else dict(r)


def _insert_member(conn: Connection, team_id: str, user_id: str, role: str, now: int) -> None:
    has_default = conn.execute("SELECT 1 FROM team_members WHERE user_id = ? AND "
                               "is_default = 1", (user_id,)).fetchone() is not None
    conn.execute("INSERT INTO team_members (team_id, user_id, role, is_default, added_at) "
                 "VALUES (?, ?, ?, ?, ?)", (team_id, user_id, role, 0 if has_default else 1,
                                            now))


def _make_default(conn: Connection, team_id: str, user_id: str) -> None:
    conn.execute("UPDATE team_members SET is_default = CASE WHEN team_id = ? THEN 1 ELSE 0 "
                 "END WHERE user_id = ?", (team_id, user_id))


def _keep_a_scheduler(conn: Connection, team: Row, member: Row) -> None:
    """Refuse to take away the team's last scheduler (demoted or removed)."""
    others = conn.execute("SELECT COUNT(*) FROM team_members WHERE team_id = ? AND "
                          "role = ? AND user_id != ?",
                          (team["team_id"], SCHEDULER, member["user_id"])).fetchone()[0]
    was = _membership(conn, team["team_id"], member["user_id"])
    if was is not None and was["role"] == SCHEDULER and not others:
        raise Conflict(f"{member['email']} is the last scheduler of team {team['name']}: "
                       "make another member scheduler first (`userclient team role`)",
                       kind="last_scheduler")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise BadRequest(f"Role must be scheduler or user, not {role[:40]!r}")

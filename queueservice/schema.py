"""The store's tables, declared once (SQLAlchemy Core): the same schema on SQLite (the
embedded default) and on PostgreSQL. Alembic's revisions (``queueservice/migrations``)
create and change it; this module is what the code reads and writes.

Times are integer milliseconds since the epoch (UTC), the wire precision, so a ``CreatedAt``
sent back in a pagination key matches the stored value exactly. Integers are 64-bit
(``BIGINT`` on PostgreSQL; SQLite's ``INTEGER`` is 64-bit already). Flags are integers 0/1.

The tables leave room for features that are not built yet: ``account_id`` on workloads
(today the submitting user's id), ``groups`` and ``team_id`` on users (unused: a user's
teams are ``team_members``); ``reservation_id`` on workloads is the booking a timeslot
workload runs in, ``cost`` its charge.

Teams (issue 12, docs/facility.md): ``teams``, their ``team_members`` (role ``scheduler`` or
``user``; ``is_default``: the team a member's work is charged to unless they name another)
and the ``ledger``, append-only: a team's balance is ``SUM(seconds)`` of its lines, in
device-seconds, so every balance is explained line by line. Each line keeps the running
sum with it (``balance_after``, written with the line under the team's lock), so a balance
is read from the team's newest line, not summed over its whole history at every submit.

The rest of the facility (migration ``0004_facility``): ``prices`` per device (a change is
a new row, so a charge keeps the price it was made at), ``bookings`` (a team's timeslot or
maintenance, ``[start_at, end_at)``, never two standing ones overlapping on a device),
weekly pay-as-you-go ``windows``, ``sessions``, ``credit_requests``; on ``workloads`` the
cost cap ``max_seconds``, ``timeslot`` (submitted for its team's timeslot), ``on_slot_end``
and ``session_id``; on the ``ledger`` the ``booking_id`` or ``session_id`` a line is for.

The web portal (issue 13, docs/portal.md; migration ``0005_portal_sessions``):
``portal_sessions``, one row per browser login, keyed by the SHA-256 of the cookie's
token, with the session's CSRF token, its last use (idle expiry) and ``expires_at`` (the
absolute expiry); logging out, changing the password or disabling the user revokes it.
``portal_uploads`` (migration ``0006_portal_uploads``): a workload file uploaded on the
portal's submit page, held (its bytes in the file store as ``staging/{upload_id}``) until
its user confirms it in the same session; removed once it has expired.

``login_failures`` (migration ``0008_login_failures``): wrong passwords in a row per e-mail
address (its SHA-256), which slow password guessing down (``logins``).

The queue sequence is one counter row (``queue_sequence``), not a database sequence: taking
a number updates the row, which holds its lock until the transaction ends, so numbers are
committed in the order they are taken on both engines (a poll's ``sequence_mark`` relies on
it; a PostgreSQL sequence gives no such order).
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, ForeignKey, Index, Integer, MetaData,
                        PrimaryKeyConstraint, Table, Text, text)

#: a 64-bit integer on every engine (SQLite: INTEGER, as the schema always had)
Int = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("user_id", Text, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("full_name", Text, nullable=False, server_default=text("''")),
    Column("groups", Text, nullable=False, server_default=text("'[]'")),  # JSON list
    Column("team_id", Text),                                   # room for teams (not built)
    Column("password_hash", Text),                             # scrypt; NULL: no password
    Column("password_temporary", Int, nullable=False, server_default=text("0")),
    Column("created_at", Int, nullable=False),
    Column("disabled_at", Int),                                # NULL: enabled
    Column("last_login", Int),                                 # last password login
    Column("token_generation", Int, nullable=False, server_default=text("0")),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_hash", Text, primary_key=True),                # SHA-256 hex of the key
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("created_at", Int, nullable=False),
    Column("revoked_at", Int),
    Column("key_id", Text),                                    # public id (never the key)
    Column("label", Text),
    Column("last_used", Int),                                  # to the minute
    Index("api_keys_user", "user_id"),
    Index("api_keys_key_id", "key_id", unique=True),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("expires_at", Int, nullable=False),
    Index("refresh_tokens_user", "user_id"),
)

devices = Table(
    "devices", metadata,
    Column("device_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("client_id", Text, nullable=False, unique=True),
    Column("secret_hash", Text, nullable=False),               # SHA-256 hex of the secret
    Column("refresh_timeout", Int, nullable=False, server_default=text("60")),
    Column("reported_status", Text),                           # last DeviceStatus sent
    Column("last_refreshed", Int),                             # last heartbeat
    Column("last_seen", Int),                                  # last call (leases)
    Column("config_refreshed", Int),                           # last configuration upload
    Column("config_extension", Text),
    Column("health", Text),                                    # JSON health summary
    Column("created_at", Int, nullable=False),
    Column("mock", Text),                                      # JSON {Board} or {MirrorOf}
    Column("token_generation", Int, nullable=False, server_default=text("0")),
)

workloads = Table(
    "workloads", metadata,
    Column("work_id", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),                # owner (user; later a team)
    Column("user_given_name", Text),                           # the submitter's name
    Column("priority", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", Int, nullable=False),
    Column("ready_at", Int),
    Column("started_at", Int),
    Column("handout_seq", Int),                                # its last hand-out's number
    Column("finished_at", Int),
    Column("attempts", Int, nullable=False, server_default=text("0")),
    Column("device_seconds", Float),
    Column("error_message", Text),
    Column("error_kind", Text),
    Column("pending_outcome", Text),                           # FAILED awaiting partials
    Column("cancel_requested", Int, nullable=False, server_default=text("0")),
    Column("workload_sha256", Text),
    Column("result_sha256", Text),
    Column("has_workload", Int, nullable=False, server_default=text("0")),
    Column("has_result", Int, nullable=False, server_default=text("0")),
    Column("reservation_id", Text),                            # room for reservations
    Column("cost", Float),                                     # room for credits
    Column("programs_done", Int),                              # last reported progress
    Column("programs_total", Int),
    Column("workload_name", Text),                             # the workload's own name
    Column("estimated_seconds", Float),                        # board time, from its file
    Column("ready_seq", Int),                                  # place in its device's line
    Column("team_id", Text),                                   # the team it is charged to
    Column("max_seconds", Float),                              # its cost cap = board deadline
    Column("timeslot", Int, nullable=False, server_default=text("0")),  # 1: for a timeslot
    Column("on_slot_end", Text),                               # wait | fail (timeslot work)
    Column("session_id", Text),                                # submitted in this session
)
_newest = (workloads.c.created_at.desc(), workloads.c.work_id.desc())
Index("workloads_created", *_newest)
Index("workloads_device", workloads.c.device_id, *_newest)
Index("workloads_account", workloads.c.account_id, *_newest)
Index("workloads_account_device", workloads.c.account_id, workloads.c.device_id, *_newest)
Index("workloads_queue", workloads.c.device_id, workloads.c.status, *_newest)
Index("workloads_status", workloads.c.status, *_newest)
Index("workloads_account_status", workloads.c.account_id, workloads.c.status, *_newest)
Index("workloads_team", workloads.c.team_id, *_newest)
#: a team's unfinished work, weighed at each of its submits (``pricing``)
Index("workloads_team_status", workloads.c.team_id, workloads.c.status, workloads.c.timeslot)
#: the claim's read under the facility's rules (``situation.claim_rows``): READY work by
#: kind without reading the timeslot work that waits for its slot
Index("workloads_claim", workloads.c.device_id, workloads.c.status, workloads.c.timeslot,
      workloads.c.team_id)
#: a device's last finished runs, newest first (its run estimate, ``workloads._run_estimate``)
Index("workloads_finished", workloads.c.device_id, workloads.c.status,
      workloads.c.finished_at.desc(), workloads.c.work_id.desc())

idempotency = Table(
    "idempotency", metadata,
    Column("account_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("body_hash", Text, nullable=False),
    Column("work_id", Text, nullable=False),
    Column("created_at", Int, nullable=False),
    PrimaryKeyConstraint("account_id", "key"),
)

queue_sequence = Table(
    "queue_sequence", metadata,
    Column("value", Int, nullable=False),                      # one row: the last number
)

service_settings = Table(
    "service_settings", metadata,                              # the service's own settings
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

teams = Table(
    "teams", metadata,                                         # a facility's project
    Column("team_id", Text, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_by", Text, nullable=False),                # the admin's UserId
    Column("created_at", Int, nullable=False),
)

team_members = Table(
    "team_members", metadata,
    Column("team_id", Text, ForeignKey("teams.team_id"), nullable=False),
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("role", Text, nullable=False),                      # scheduler | user
    Column("is_default", Int, nullable=False, server_default=text("0")),
    Column("added_at", Int, nullable=False),
    PrimaryKeyConstraint("team_id", "user_id"),
    Index("team_members_user", "user_id"),
)

ledger = Table(
    "ledger", metadata,                                        # append-only: never updated
    Column("entry_id", Int, primary_key=True, autoincrement=True),  # the order of lines
    Column("team_id", Text, ForeignKey("teams.team_id"), nullable=False),
    Column("kind", Text, nullable=False),                      # grant | charge | refund
    Column("seconds", Float, nullable=False),                  # signed device-seconds
    Column("user_id", Text, nullable=False),                   # who did it
    Column("note", Text),
    Column("at", Int, nullable=False),
    Column("work_id", Text),
    Column("device_id", Text),
    Column("booking_id", Text),                                # a timeslot paid or refunded
    Column("session_id", Text),                                # a session's held time
    Column("balance_after", Float),                            # the running sum, this line in
    Index("ledger_team", "team_id", "entry_id"),
    Index("ledger_team_at", "team_id", "at"),                 # a team's lines over a range
)

prices = Table(
    "prices", metadata,                                        # a change is a new row
    Column("price_id", Int, primary_key=True, autoincrement=True),
    Column("device_id", Text, nullable=False),
    Column("per_used_second", Float, nullable=False),          # pay-as-you-go, per board s
    Column("per_reserved_second", Float, nullable=False),      # timeslots, per booked s
    Column("since", Int, nullable=False),                      # in force from (ms)
    Column("set_by", Text, nullable=False),                    # the admin's UserId
    Index("prices_device", "device_id", "since"),
)

bookings = Table(
    "bookings", metadata,                                      # [start_at, end_at) exclusive
    Column("booking_id", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("kind", Text, nullable=False),                      # reservation | maintenance
    Column("team_id", Text),                                   # reservations only
    Column("start_at", Int, nullable=False),
    Column("end_at", Int, nullable=False),
    Column("reason", Text),                                    # maintenance's; a slot's note
    Column("created_by", Text, nullable=False),
    Column("created_at", Int, nullable=False),
    Column("cost", Float),                                     # device-seconds paid (slots)
    Column("cancelled_at", Int),                               # NULL: standing
    Column("cancelled_by", Text),
    Index("bookings_device", "device_id", "start_at"),
    Index("bookings_team", "team_id", "start_at"),
)

windows = Table(
    "windows", metadata,                                       # none for a device: always open
    Column("window_id", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("day", Int, nullable=False),                        # 0 Monday .. 6 Sunday (UTC)
    Column("start_minute", Int, nullable=False),               # of the day, 0..1439
    Column("end_minute", Int, nullable=False),                 # 1..1440, after start_minute
    Column("created_by", Text, nullable=False),
    Column("created_at", Int, nullable=False),
    Index("windows_device", "device_id"),
)

sessions = Table(
    "sessions", metadata,                                      # IBM Runtime's sessions
    Column("session_id", Text, primary_key=True),
    Column("device_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("team_id", Text),
    Column("opened_at", Int, nullable=False),
    Column("started_at", Int),                                 # its first work handed out
    Column("max_seconds", Float, nullable=False),              # held at most this long
    Column("idle_seconds", Float, nullable=False),             # released when idle this long
    Column("last_activity_at", Int),                           # last hand-out or result
    Column("closed_at", Int),
    Column("close_reason", Text),                              # closed | max_time | idle | ...
    Column("charged_seconds", Float),                          # held time charged at the end
    Index("sessions_device", "device_id", "closed_at"),
    Index("sessions_user", "user_id", "opened_at"),
)

credit_requests = Table(
    "credit_requests", metadata,                               # schedulers ask, admins decide
    Column("request_id", Text, primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),                   # the scheduler who asked
    Column("seconds", Float, nullable=False),
    Column("justification", Text, nullable=False),
    Column("estimate", Text),                                  # the attached estimate (JSON)
    Column("state", Text, nullable=False),                     # pending | approved | denied
    Column("created_at", Int, nullable=False),
    Column("decided_by", Text),
    Column("decided_at", Int),
    Column("decision_note", Text),
    Index("credit_requests_team", "team_id", "created_at"),
    Index("credit_requests_state", "state", "created_at"),
)

portal_sessions = Table(
    "portal_sessions", metadata,                               # the web portal's logins
    Column("token_hash", Text, primary_key=True),              # SHA-256 hex of the cookie
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("csrf_token", Text, nullable=False),                # every form carries it
    Column("created_at", Int, nullable=False),
    Column("last_used_at", Int, nullable=False),               # to the minute (idle expiry)
    Column("expires_at", Int, nullable=False),                 # the absolute expiry
    Column("revoked_at", Int),                                 # logout, password, disable
    Index("portal_sessions_user", "user_id"),
)

portal_uploads = Table(
    "portal_uploads", metadata,                                # the portal's staged uploads
    Column("upload_id", Text, primary_key=True),               # its token; file staging/{id}
    Column("session_hash", Text, nullable=False),              # the portal session it is for
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column("team_id", Text),                                    # the team it is charged to
    Column("timeslot", Int, nullable=False, server_default=text("0")),  # 1: timeslot work
    Column("workload_name", Text),
    Column("file_name", Text, nullable=False),                 # as the browser named it
    Column("sha256", Text, nullable=False),
    Column("size", Int, nullable=False),
    Column("created_at", Int, nullable=False),
    Column("expires_at", Int, nullable=False),                 # removed after, unconfirmed
    Column("work_id", Text),                                   # once confirmed
    Index("portal_uploads_expiry", "expires_at"),
)

login_failures = Table(
    "login_failures", metadata,                                # wrong passwords in a row
    Column("subject", Text, primary_key=True),                 # SHA-256 of the address
    Column("failures", Int, nullable=False),
    Column("last_failure_at", Int, nullable=False),
)

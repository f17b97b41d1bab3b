"""The rest of the facility (issue 12, docs/facility.md): ``prices``, ``bookings``
(timeslots and maintenance), weekly ``windows``, ``sessions`` and ``credit_requests``; on
``workloads`` the cost cap, the timeslot flag, what happens at a slot's end and the session;
on the ``ledger`` the booking or session a line is for, and the running balance with each
line (filled in for the lines already there).

Revision ID: 0004_facility
Revises: 0003_teams
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_facility"
down_revision = "0003_teams"
branch_labels = None
depends_on = None

Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("workloads", sa.Column("max_seconds", sa.Float()))
    op.add_column("workloads", sa.Column("timeslot", Int, nullable=False,
                                         server_default=sa.text("0")))
    op.add_column("workloads", sa.Column("on_slot_end", sa.Text()))
    op.add_column("workloads", sa.Column("session_id", sa.Text()))
    op.create_index("workloads_team", "workloads",
                    ["team_id", sa.text("created_at DESC"), sa.text("work_id DESC")])
    op.create_index("workloads_claim", "workloads",
                    ["device_id", "status", "timeslot", "team_id"])
    op.create_index("workloads_team_status", "workloads", ["team_id", "status", "timeslot"])
    op.add_column("ledger", sa.Column("booking_id", sa.Text()))
    op.add_column("ledger", sa.Column("session_id", sa.Text()))
    op.add_column("ledger", sa.Column("balance_after", sa.Float()))
    op.execute("UPDATE ledger SET balance_after = (SELECT SUM(earlier.seconds) FROM ledger "
               "earlier WHERE earlier.team_id = ledger.team_id AND earlier.entry_id <= "
               "ledger.entry_id)")
    op.create_table("prices",
                    sa.Column("price_id", Int, nullable=False, autoincrement=True),
                    sa.Column("device_id", sa.Text(), nullable=False),
                    sa.Column("per_used_second", sa.Float(), nullable=False),
                    sa.Column("per_reserved_second", sa.Float(), nullable=False),
                    sa.Column("since", Int, nullable=False),
                    sa.Column("set_by", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("price_id"))
    op.create_index("prices_device", "prices", ["device_id", "since"])
    op.create_table("bookings",
                    sa.Column("booking_id", sa.Text(), nullable=False),
                    sa.Column("device_id", sa.Text(), nullable=False),
                    sa.Column("kind", sa.Text(), nullable=False),
                    sa.Column("team_id", sa.Text()),
                    sa.Column("start_at", Int, nullable=False),
                    sa.Column("end_at", Int, nullable=False),
                    sa.Column("reason", sa.Text()),
                    sa.Column("created_by", sa.Text(), nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.Column("cost", sa.Float()),
                    sa.Column("cancelled_at", Int),
                    sa.Column("cancelled_by", sa.Text()),
                    sa.PrimaryKeyConstraint("booking_id"))
    op.create_index("bookings_device", "bookings", ["device_id", "start_at"])
    op.create_index("bookings_team", "bookings", ["team_id", "start_at"])
    op.create_table("windows",
                    sa.Column("window_id", sa.Text(), nullable=False),
                    sa.Column("device_id", sa.Text(), nullable=False),
                    sa.Column("day", Int, nullable=False),
                    sa.Column("start_minute", Int, nullable=False),
                    sa.Column("end_minute", Int, nullable=False),
                    sa.Column("created_by", sa.Text(), nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.PrimaryKeyConstraint("window_id"))
    op.create_index("windows_device", "windows", ["device_id"])
    op.create_table("sessions",
                    sa.Column("session_id", sa.Text(), nullable=False),
                    sa.Column("device_id", sa.Text(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("team_id", sa.Text()),
                    sa.Column("opened_at", Int, nullable=False),
                    sa.Column("started_at", Int),
                    sa.Column("max_seconds", sa.Float(), nullable=False),
                    sa.Column("idle_seconds", sa.Float(), nullable=False),
                    sa.Column("last_activity_at", Int),
                    sa.Column("closed_at", Int),
                    sa.Column("close_reason", sa.Text()),
                    sa.Column("charged_seconds", sa.Float()),
                    sa.PrimaryKeyConstraint("session_id"))
    op.create_index("sessions_device", "sessions", ["device_id", "closed_at"])
    op.create_index("sessions_user", "sessions", ["user_id", "opened_at"])
    op.create_table("credit_requests",
                    sa.Column("request_id", sa.Text(), nullable=False),
                    sa.Column("team_id", sa.Text(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("seconds", sa.Float(), nullable=False),
                    sa.Column("justification", sa.Text(), nullable=False),
                    sa.Column("estimate", sa.Text()),
                    sa.Column("state", sa.Text(), nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.Column("decided_by", sa.Text()),
                    sa.Column("decided_at", Int),
                    sa.Column("decision_note", sa.Text()),
                    sa.PrimaryKeyConstraint("request_id"))
    op.create_index("credit_requests_team", "credit_requests", ["team_id", "created_at"])
    op.create_index("credit_requests_state", "credit_requests", ["state", "created_at"])


def downgrade() -> None:
    for table in ("credit_requests", "sessions", "windows", "bookings", "prices"):
        op.drop_table(table)
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("balance_after")
        batch.drop_column("session_id")
        batch.drop_column("booking_id")
    op.drop_index("workloads_claim", table_name="workloads")
    op.drop_index("workloads_team_status", table_name="workloads")
    op.drop_index("workloads_team", table_name="workloads")
    with op.batch_alter_table("workloads") as batch:
        for column in ("session_id", "on_slot_end", "timeslot", "max_seconds"):
            batch.drop_column(column)

"""Teams and their credits (issue 12, docs/facility.md): ``teams``, ``team_members`` (role
``scheduler`` or ``user``, ``is_default``), the append-only ``ledger`` of device-seconds, and
``workloads.team_id`` (the team a workload is charged to; NULL: none).

Revision ID: 0003_teams
Revises: 0002_service_settings
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_teams"
down_revision = "0002_service_settings"
branch_labels = None
depends_on = None

Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("teams",
                    sa.Column("team_id", sa.Text(), nullable=False),
                    sa.Column("name", sa.Text(), nullable=False),
                    sa.Column("created_by", sa.Text(), nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.PrimaryKeyConstraint("team_id"),
                    sa.UniqueConstraint("name"))
    op.create_table("team_members",
                    sa.Column("team_id", sa.Text(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("role", sa.Text(), nullable=False),
                    sa.Column("is_default", Int, nullable=False, server_default=sa.text("0")),
                    sa.Column("added_at", Int, nullable=False),
                    sa.ForeignKeyConstraint(["team_id"], ["teams.team_id"]),
                    sa.ForeignKeyConstraint(["user_id"], ["users.user_id"]),
                    sa.PrimaryKeyConstraint("team_id", "user_id"))
    op.create_index("team_members_user", "team_members", ["user_id"])
    op.create_table("ledger",
                    sa.Column("entry_id", Int, nullable=False, autoincrement=True),
                    sa.Column("team_id", sa.Text(), nullable=False),
                    sa.Column("kind", sa.Text(), nullable=False),
                    sa.Column("seconds", sa.Float(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("note", sa.Text()),
                    sa.Column("at", Int, nullable=False),
                    sa.Column("work_id", sa.Text()),
                    sa.Column("device_id", sa.Text()),
                    sa.ForeignKeyConstraint(["team_id"], ["teams.team_id"]),
                    sa.PrimaryKeyConstraint("entry_id"))
    op.create_index("ledger_team", "ledger", ["team_id", "entry_id"])
    op.add_column("workloads", sa.Column("team_id", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("workloads") as batch:
        batch.drop_column("team_id")
    op.drop_index("ledger_team", table_name="ledger")
    op.drop_table("ledger")
    op.drop_index("team_members_user", table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("teams")

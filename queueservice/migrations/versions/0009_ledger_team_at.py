"""An index for reading a team's ledger over a time range: ``ledger_team_at`` on (team,
time). A usage report for one month (the portal's usage page, ``credits usage --team``) and
the fair share's recent charges (``situation``) read a range of a team's lines; with only
``ledger_team`` they went through every line the team ever had (a year of a busy team's
lines for one month's report).

Revision ID: 0009_ledger_team_at
Revises: 0008_login_failures
"""
from __future__ import annotations

from alembic import op

revision = "0009_ledger_team_at"
down_revision = "0008_login_failures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ledger_team_at", "ledger", ["team_id", "at"])


def downgrade() -> None:
    op.drop_index("ledger_team_at", table_name="ledger")

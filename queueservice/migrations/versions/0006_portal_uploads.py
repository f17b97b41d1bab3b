"""The web portal's staged uploads (issue 13, docs/portal.md slice 4): ``portal_uploads``,
one row per workload file uploaded on the submit page and not yet confirmed (its bytes in
the file store as ``staging/{upload_id}``): the session it is bound to, what was chosen
(device, priority, team, timeslot, name), the file's name, SHA-256 and size, its expiry,
and the workload it became once confirmed.

Revision ID: 0006_portal_uploads
Revises: 0005_portal_sessions
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_portal_uploads"
down_revision = "0005_portal_sessions"
branch_labels = None
depends_on = None

Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("portal_uploads",
                    sa.Column("upload_id", sa.Text(), nullable=False),
                    sa.Column("session_hash", sa.Text(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("device_id", sa.Text(), nullable=False),
                    sa.Column("priority", sa.Text(), nullable=False),
                    sa.Column("team_id", sa.Text()),
                    sa.Column("timeslot", Int, server_default=sa.text("0"), nullable=False),
                    sa.Column("workload_name", sa.Text()),
                    sa.Column("file_name", sa.Text(), nullable=False),
                    sa.Column("sha256", sa.Text(), nullable=False),
                    sa.Column("size", Int, nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.Column("expires_at", Int, nullable=False),
                    sa.Column("work_id", sa.Text()),
                    sa.PrimaryKeyConstraint("upload_id"))
    op.create_index("portal_uploads_expiry", "portal_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("portal_uploads_expiry", table_name="portal_uploads")
    op.drop_table("portal_uploads")

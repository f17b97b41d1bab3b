"""The web portal's sessions (issue 13, docs/portal.md): ``portal_sessions``, one row per
browser login (the SHA-256 of the cookie's token, the user, the CSRF token, the creation,
the last use, the absolute expiry and the revocation).

Revision ID: 0005_portal_sessions
Revises: 0004_facility
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_portal_sessions"
down_revision = "0004_facility"
branch_labels = None
depends_on = None

Int = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("portal_sessions",
                    sa.Column("token_hash", sa.Text(), nullable=False),
                    sa.Column("user_id", sa.Text(), nullable=False),
                    sa.Column("csrf_token", sa.Text(), nullable=False),
                    sa.Column("created_at", Int, nullable=False),
                    sa.Column("last_used_at", Int, nullable=False),
                    sa.Column("expires_at", Int, nullable=False),
                    sa.Column("revoked_at", Int),
                    sa.ForeignKeyConstraint(["user_id"], ["users.user_id"]),
                    sa.PrimaryKeyConstraint("token_hash"))
    op.create_index("portal_sessions_user", "portal_sessions", ["user_id"])


def downgrade() -> None:
    op.drop_index("portal_sessions_user", table_name="portal_sessions")
    op.drop_table("portal_sessions")

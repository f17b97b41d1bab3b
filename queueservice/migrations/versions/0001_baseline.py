"""The baseline: the schema as it was at the last hand-written migration (version 6).

A SQLite database made before Alembic is brought to version 6 by the old list
(``queueservice.legacy``) and stamped with this revision: nothing in it changes.

Revision ID: 0001_baseline
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('devices',
        sa.Column('device_id', sa.Text(), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('client_id', sa.Text(), nullable=False),
        sa.Column('secret_hash', sa.Text(), nullable=False),
        sa.Column('refresh_timeout', INT, server_default=sa.text('60'), nullable=False),
        sa.Column('reported_status', sa.Text(), nullable=True),
        sa.Column('last_refreshed', INT, nullable=True),
        sa.Column('last_seen', INT, nullable=True),
        sa.Column('config_refreshed', INT, nullable=True),
        sa.Column('config_extension', sa.Text(), nullable=True),
        sa.Column('health', sa.Text(), nullable=True),
        sa.Column('created_at', INT, nullable=False),
        sa.Column('mock', sa.Text(), nullable=True),
        sa.Column('token_generation', INT, server_default=sa.text('0'), nullable=False),
        sa.PrimaryKeyConstraint('device_id'),
        sa.UniqueConstraint('client_id')
    )
    op.create_table('idempotency',
        sa.Column('account_id', sa.Text(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('body_hash', sa.Text(), nullable=False),
        sa.Column('work_id', sa.Text(), nullable=False),
        sa.Column('created_at', INT, nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'key')
    )
    op.create_table('queue_sequence',
        sa.Column('value', INT, nullable=False)
    )
    op.create_table('users',
        sa.Column('user_id', sa.Text(), nullable=False),
        sa.Column('email', sa.Text(), nullable=False),
        sa.Column('full_name', sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column('groups', sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column('team_id', sa.Text(), nullable=True),
        sa.Column('password_hash', sa.Text(), nullable=True),
        sa.Column('password_temporary', INT, server_default=sa.text('0'), nullable=False),
        sa.Column('created_at', INT, nullable=False),
        sa.Column('disabled_at', INT, nullable=True),
        sa.Column('last_login', INT, nullable=True),
        sa.Column('token_generation', INT, server_default=sa.text('0'), nullable=False),
        sa.PrimaryKeyConstraint('user_id'),
        sa.UniqueConstraint('email')
    )
    op.create_table('workloads',
        sa.Column('work_id', sa.Text(), nullable=False),
        sa.Column('device_id', sa.Text(), nullable=False),
        sa.Column('account_id', sa.Text(), nullable=False),
        sa.Column('user_given_name', sa.Text(), nullable=True),
        sa.Column('priority', sa.Text(), nullable=False),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('created_at', INT, nullable=False),
        sa.Column('ready_at', INT, nullable=True),
        sa.Column('started_at', INT, nullable=True),
        sa.Column('handout_seq', INT, nullable=True),
        sa.Column('finished_at', INT, nullable=True),
        sa.Column('attempts', INT, server_default=sa.text('0'), nullable=False),
        sa.Column('device_seconds', sa.Float(), nullable=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('error_kind', sa.Text(), nullable=True),
        sa.Column('pending_outcome', sa.Text(), nullable=True),
        sa.Column('cancel_requested', INT, server_default=sa.text('0'), nullable=False),
        sa.Column('workload_sha256', sa.Text(), nullable=True),
        sa.Column('result_sha256', sa.Text(), nullable=True),
        sa.Column('has_workload', INT, server_default=sa.text('0'), nullable=False),
        sa.Column('has_result', INT, server_default=sa.text('0'), nullable=False),
        sa.Column('reservation_id', sa.Text(), nullable=True),
        sa.Column('cost', sa.Float(), nullable=True),
        sa.Column('programs_done', INT, nullable=True),
        sa.Column('programs_total', INT, nullable=True),
        sa.Column('workload_name', sa.Text(), nullable=True),
        sa.Column('estimated_seconds', sa.Float(), nullable=True),
        sa.Column('ready_seq', INT, nullable=True),
        sa.PrimaryKeyConstraint('work_id')
    )
    op.create_index('workloads_account', 'workloads', ['account_id', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_account_device', 'workloads', ['account_id', 'device_id', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_account_status', 'workloads', ['account_id', 'status', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_created', 'workloads', [sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_device', 'workloads', ['device_id', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_queue', 'workloads', ['device_id', 'status', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_index('workloads_status', 'workloads', ['status', sa.literal_column('created_at DESC'), sa.literal_column('work_id DESC')], unique=False)
    op.create_table('api_keys',
        sa.Column('key_hash', sa.Text(), nullable=False),
        sa.Column('user_id', sa.Text(), nullable=False),
        sa.Column('created_at', INT, nullable=False),
        sa.Column('revoked_at', INT, nullable=True),
        sa.Column('key_id', sa.Text(), nullable=True),
        sa.Column('label', sa.Text(), nullable=True),
        sa.Column('last_used', INT, nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
        sa.PrimaryKeyConstraint('key_hash')
    )
    op.create_index('api_keys_key_id', 'api_keys', ['key_id'], unique=True)
    op.create_index('api_keys_user', 'api_keys', ['user_id'], unique=False)
    op.create_table('refresh_tokens',
        sa.Column('token_hash', sa.Text(), nullable=False),
        sa.Column('user_id', sa.Text(), nullable=False),
        sa.Column('expires_at', INT, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.user_id'], ),
        sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index('refresh_tokens_user', 'refresh_tokens', ['user_id'], unique=False)
    op.execute("INSERT INTO queue_sequence (value) VALUES (0)")


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: restore a backup instead")

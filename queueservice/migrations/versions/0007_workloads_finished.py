"""An index for a device's run estimate (``WorkloadStore.run_estimate_seconds``: the mean
board time of its last 20 finished runs): ``workloads_finished`` on (device, status,
finished_at, work_id), so the read takes 20 index entries instead of sorting every DONE
workload of the device. Every queue view pays that read (the API's ``GET /workloads/{id}``,
the portal's lists, the facility's claim); with 100,000 stored it was a third of a
workloads page's time.

Revision ID: 0007_workloads_finished
Revises: 0006_portal_uploads
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_workloads_finished"
down_revision = "0006_portal_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("workloads_finished", "workloads",
                    ["device_id", "status", sa.text("finished_at DESC"),
                     sa.text("work_id DESC")])


def downgrade() -> None:
    op.drop_index("workloads_finished", table_name="workloads")

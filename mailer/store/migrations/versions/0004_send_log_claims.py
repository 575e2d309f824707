"""send_log: who claimed a row and when (leases), the first attempt (retry deadline), sent_at indexed (daily cap).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_log") as batch:
        batch.add_column(sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_send_log_sent_at", ["sent_at"], unique=False)
    # Rows already retrying keep the deadline they had before: measured from their creation.
    op.execute("UPDATE send_log SET first_attempt_at = created_at WHERE attempts > 0")


def downgrade() -> None:
    with op.batch_alter_table("send_log") as batch:
        batch.drop_index("ix_send_log_sent_at")
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
        batch.drop_column("first_attempt_at")

"""transient_failure: temporary delivery failures per address, counted to suppress a soft-bouncing address.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transient_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("message_key", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email", "message_key", name="uq_transient_failure_email_message"),
    )
    op.create_index("ix_transient_failure_occurred_at", "transient_failure", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_transient_failure_occurred_at", table_name="transient_failure")
    op.drop_table("transient_failure")

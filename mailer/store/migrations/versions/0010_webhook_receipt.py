"""webhook_receipt: provider calls already acted on (Mailgun tokens, SNS message ids), refused when replayed.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "key", name="uq_webhook_receipt"),
    )
    op.create_index("ix_webhook_receipt_received_at", "webhook_receipt", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_receipt_received_at", table_name="webhook_receipt")
    op.drop_table("webhook_receipt")

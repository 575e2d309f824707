"""feedback: answers to "how did we do?", one per send-log row, and whether a person has looked.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customer.id"), nullable=False),
        sa.Column("send_log_id", sa.Integer(), sa.ForeignKey("send_log.id"), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("answer", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unhappy_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notices", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("send_log_id", name="uq_feedback_send_log"),
    )
    op.create_index("ix_feedback_customer_open", "feedback", ["customer_id", "unhappy_since"])
    op.create_index("ix_feedback_campaign_answered", "feedback", ["campaign", "answered_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_campaign_answered", table_name="feedback")
    op.drop_index("ix_feedback_customer_open", table_name="feedback")
    op.drop_table("feedback")

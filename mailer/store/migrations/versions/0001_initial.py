"""The initial tables: customer, interaction, send_log (the schema before migrations existed).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 19:10:10.037331
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("customer_since", sa.Date(), nullable=False),
        sa.Column("since_md", sa.Integer(), nullable=False),
        sa.Column("birthday_month", sa.Integer(), nullable=True),
        sa.Column("birthday_day", sa.Integer(), nullable=True),
        sa.Column("birthday_year", sa.Integer(), nullable=True),
        sa.Column("birthday_md", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("owner_name", sa.String(), nullable=True),
        sa.Column("owner_email", sa.String(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("order_count", sa.Integer(), nullable=False),
        sa.Column("lifetime_spend", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("interaction_count", sa.Integer(), nullable=False),
        sa.Column("last_interaction_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unsubscribe_source", sa.String(), nullable=True),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suppressed_reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customer_birthday_md", "customer", ["birthday_md"], unique=False)
    op.create_index("ix_customer_email", "customer", ["email"], unique=False)
    op.create_index("ix_customer_external_id", "customer", ["external_id"], unique=True)
    op.create_index("ix_customer_since_md", "customer", ["since_md"], unique=False)

    op.create_table(
        "interaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "reference", name="uq_interaction_reference"),
    )
    op.create_index("ix_interaction_customer_id", "interaction", ["customer_id"], unique=False)
    op.create_index("ix_interaction_occurred_at", "interaction", ["occurred_at"], unique=False)

    op.create_table(
        "send_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("occasion_key", sa.String(length=200), nullable=False),
        sa.Column("occasion_kind", sa.String(length=50), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("occasion", sa.JSON(), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("to_address", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("last_reply", sa.String(), nullable=False),
        sa.Column("is_test", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "campaign", "occasion_key", name="uq_send_log_occasion"),
    )
    op.create_index("ix_send_log_customer_id", "send_log", ["customer_id"], unique=False)
    op.create_index(
        "ix_send_log_status_next", "send_log", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_send_log_status_next", table_name="send_log")
    op.drop_index("ix_send_log_customer_id", table_name="send_log")

    op.drop_table("send_log")
    op.drop_index("ix_interaction_occurred_at", table_name="interaction")
    op.drop_index("ix_interaction_customer_id", table_name="interaction")

    op.drop_table("interaction")
    op.drop_index("ix_customer_since_md", table_name="customer")
    op.drop_index("ix_customer_external_id", table_name="customer")
    op.drop_index("ix_customer_email", table_name="customer")
    op.drop_index("ix_customer_birthday_md", table_name="customer")

    op.drop_table("customer")

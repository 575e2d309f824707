"""Indexes for milestone, silence and follow-up planning; plan_mark for passes after an outage.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_mark",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("planned_through", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("customer") as batch:
        batch.create_index("ix_customer_customer_since", ["customer_since"], unique=False)
        batch.create_index("ix_customer_last_interaction_at", ["last_interaction_at"], unique=False)
    with op.batch_alter_table("interaction") as batch:
        # (customer_id, occurred_at) serves every lookup the customer_id index did.
        batch.drop_index("ix_interaction_customer_id")
        batch.drop_index("ix_interaction_occurred_at")
        batch.create_index("ix_interaction_customer_occurred", ["customer_id", "occurred_at"], unique=False)
        batch.create_index("ix_interaction_kind_occurred", ["kind", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        batch.drop_index("ix_interaction_kind_occurred")
        batch.drop_index("ix_interaction_customer_occurred")
        batch.create_index("ix_interaction_occurred_at", ["occurred_at"], unique=False)
        batch.create_index("ix_interaction_customer_id", ["customer_id"], unique=False)
    with op.batch_alter_table("customer") as batch:
        batch.drop_index("ix_customer_last_interaction_at")
        batch.drop_index("ix_customer_customer_since")
    op.drop_table("plan_mark")

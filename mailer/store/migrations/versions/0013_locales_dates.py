"""Customer locales, the locale each message went out in, and date attributes indexed for date occasions.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))
    with op.batch_alter_table("send_log") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=False, server_default=""))
    op.create_table(
        "customer_date",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("attribute", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Date(), nullable=False),
        sa.Column("md", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("customer_id", "attribute"),
    )
    op.create_index("ix_customer_date_attribute_md", "customer_date", ["attribute", "md"])
    op.create_index("ix_customer_date_attribute_value", "customer_date", ["attribute", "value"])
    # Dates already stored as attributes are indexed by the next import of their customers.


def downgrade() -> None:
    op.drop_index("ix_customer_date_attribute_value", table_name="customer_date")
    op.drop_index("ix_customer_date_attribute_md", table_name="customer_date")
    op.drop_table("customer_date")
    with op.batch_alter_table("send_log") as batch:
        batch.drop_column("locale")
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("locale")

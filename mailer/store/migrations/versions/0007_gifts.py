"""gift_code: pooled and generated gift codes and the send-log row each went to; send_log.gift.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_log") as batch:
        batch.add_column(sa.Column("gift", sa.JSON(), nullable=True))
    op.create_table(
        "gift_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gift", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("send_log_id", sa.Integer(), nullable=True),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("returned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("returns", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["send_log_id"], ["send_log.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gift", "code", name="uq_gift_code"),
        sa.UniqueConstraint("send_log_id"),
    )
    op.create_index("ix_gift_code_pick", "gift_code", ["gift", "state", "expires_on"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gift_code_pick", table_name="gift_code")
    op.drop_table("gift_code")
    with op.batch_alter_table("send_log") as batch:
        batch.drop_column("gift")

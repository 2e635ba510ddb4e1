"""rate counts: what each node counted for each user, so rate limits hold across nodes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_counts",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("node_id", sa.Text, nullable=False),
        sa.Column("period", sa.Integer, nullable=False),  # window length in seconds: 60 or 3600
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "node_id", "period", "window_start", name="pk_rate_counts"),
    )
    op.create_index("ix_rate_counts_window_start", "rate_counts", ["window_start"])
    op.create_table(
        "rate_blocks",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_blocks")
    op.drop_index("ix_rate_counts_window_start", table_name="rate_counts")
    op.drop_table("rate_counts")

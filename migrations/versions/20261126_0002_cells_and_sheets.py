"""cells and sheets: the state cell decisions need, kept in the append transaction

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cells",
        sa.Column("sheet_id", sa.Text, nullable=False),
        sa.Column("cell_id", sa.Text, nullable=False),
        sa.Column("value", JSONB),
        sa.Column("formula", sa.Text),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sheet_id", "cell_id", name="pk_cells"),
    )
    op.create_table(
        "sheets",
        sa.Column("sheet_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sheet_id", name="pk_sheets"),
    )


def downgrade() -> None:
    op.drop_table("sheets")
    op.drop_table("cells")

"""node recheck: when a dead node's memberships are to be read a second time

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Why: a join a dead node handed to another node just before it stopped appending can commit after a
survivor read its memberships, so they are read again once such a join must have committed. That
second look was kept in the memory of the survivor that marked the node stopped, and was lost if that
survivor stopped or failed first. In the row, any survivor makes it once it is due
(engine/cluster/reaper.py); NULL when none is owed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("recheck_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_nodes_recheck_at", "nodes", ["recheck_at"], postgresql_where=sa.text("recheck_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_nodes_recheck_at", table_name="nodes")
    op.drop_column("nodes", "recheck_at")

"""node routing: whether a node writes the partitions it holds for the others (`ROUTE_APPENDS`)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Why: the writing of the log's partitions is shared among the nodes that route appends. Counted with
the others, a node without `ROUTE_APPENDS` took a share it never held, so during a rolling change of
the setting some partitions had no writer. Peers read this column to leave it out of that sharing
(engine/cluster/registry.py); NULL for a node of an earlier version, which counts as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("routes_appends", sa.Boolean, nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "routes_appends")

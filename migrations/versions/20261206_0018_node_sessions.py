"""node sessions: the `application_name` a node's database connections carry

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

Why: a node that crashes says no goodbye, and its heartbeat row looks alive until
`NODE_DEAD_AFTER_SECONDS` have passed; until then the survivors keep counting it when they share out
the log's partitions, and its share has no holder. Its connections, though, end with its process, so
its name leaves `pg_stat_activity` at once. Peers read this column to look for it there
(engine/cluster/registry.py). NULL for a node of an earlier version, which peers count as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("session_name", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "session_name")

"""idle uploads index: the upload sweeper's pages read only unfinished uploads

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

Why: the sweeper asks for the unfinished uploads idle since a cutoff, stalest first, a page at a time
(engine/readmodels/idle_uploads.py). Without an index of its own each page scanned every upload ever
made, complete ones included, and sorted the unfinished ones, so a sweep cost grew with the table's
whole history. A partial index over the unfinished ones, in the sweeper's order, makes a page read the
rows it returns: it holds only the uploads in progress, which end within the idle timeout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_uploads_idle",
        "uploads",
        ["updated_at", "file_id", "user_id"],
        postgresql_where=sa.text("status IN ('started', 'uploading')"),
    )


def downgrade() -> None:
    op.drop_index("ix_uploads_idle", table_name="uploads")

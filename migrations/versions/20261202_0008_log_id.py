"""log id: a random identity for each log, so nodes of different logs never meet on a shared bus

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The existing row gets its id here too: gen_random_uuid() is built into PostgreSQL 13 and later.
    op.add_column(
        "log_head",
        sa.Column("log_id", UUID(as_uuid=False), nullable=False, server_default=sa.text("gen_random_uuid()")),
    )


def downgrade() -> None:
    op.drop_column("log_head", "log_id")

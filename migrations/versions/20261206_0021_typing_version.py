"""typing version: the start of each stretch of typing named by its version in its stream

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Why: an expired `TypingStopped` names the start it ends, so that a start refreshing the typing while
the expiry commits is not ended by it. A position cannot name it: moving the log to another partition
count renumbers positions (and a new start could take an old one's). Its version in the room's
volatile stream is kept by a move. NULL in rows written before this revision: typing lasts seconds,
and a stop for such a row ends it as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("typing", sa.Column("version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("typing", "version")

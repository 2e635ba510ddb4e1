"""typing version: the start of each stretch of typing named by its version in its stream

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Why: an expired `TypingStopped` names the start it ends, so that a start refreshing the typing while
the expiry commits is not ended by it. A position cannot name it: moving the log to another partition
count renumbers positions (and a new start could take an old one's). Its version in the room's
volatile stream is kept by a move. Rows already there take their start's version from the log, as a
rebuild would; a row written later by a node of the version before is NULL (a stop ends it as
before) until the next rebuild.
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
    op.execute(
        "UPDATE typing AS t SET version = e.stream_version FROM events AS e"
        " WHERE e.partition = t.partition AND e.position = t.position"
    )


def downgrade() -> None:
    op.drop_column("typing", "version")

"""checkpoints per partition: a projector's checkpoint is kept for each partition of the log

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

Why: positions count within a partition of the log (revision 0013), so how far a projector has folded
the log is one position per partition. `projector_checkpoints` gets a `partition` column leading its
key; every existing checkpoint is partition 0's, which is the whole of a log migrated from before
0013. The downgrade is refused while any checkpoint belongs to another partition.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "projector_checkpoints", sa.Column("partition", sa.SmallInteger(), nullable=False, server_default="0")
    )
    op.alter_column("projector_checkpoints", "partition", server_default=None)
    op.drop_constraint("pk_projector_checkpoints", "projector_checkpoints", type_="primary")
    op.create_primary_key("pk_projector_checkpoints", "projector_checkpoints", ["partition", "name"])


def downgrade() -> None:
    others = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM projector_checkpoints WHERE partition <> 0"))
        .scalar_one()
    )
    if others:
        raise RuntimeError(
            f"{others} checkpoint(s) of partitions other than 0; the schema before revision 0014 "
            "keeps one position per projector"
        )
    op.drop_constraint("pk_projector_checkpoints", "projector_checkpoints", type_="primary")
    op.create_primary_key("pk_projector_checkpoints", "projector_checkpoints", ["name"])
    op.drop_column("projector_checkpoints", "partition")

"""events sample: planner statistics of `events` from a sample of 3,000 rows instead of 30,000

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

Why: `ANALYZE` samples 300 rows per unit of the largest statistics target among a table's columns,
and autovacuum analyzes `events` again whenever a tenth of it is new, which on a young log is at
every visit. With the payloads at target 0 (migration 0016) the visit still cost 60-78 ms of a core
on a log of 63,000 events, 200 ms on one of 2,000,000, most of it reading and sorting the 30,000
sampled rows; where PostgreSQL shares cores with the server (the embedded one, a small host) that
pause is the largest stall left in a node's delivery latency. At target 10 it is 15-20 and 40 ms.
The planner's choices for the log's reads were the same at both targets on the 2,000,000-event log
(docs/performance.md): every read names a stream through its unique index, or a partition and
position range through the primary key; the one read that depended on the count of streams (a
room's newest event by a time) no longer asks the planner to guess it. A smaller sample estimates
fewer distinct streams (2,790 against 15,518 of 124,954 there); nothing reads that estimate now.
Both statements take only a SHARE UPDATE EXCLUSIVE lock.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of `events` but the payloads, which stay at 0 (migration 0016).
_COLUMNS = (
    "partition",
    "position",
    "stream_id",
    "stream_version",
    "type",
    "user_id",
    "idempotency_key",
    "recorded_at",
)
SAMPLED_TARGET = 10


def _set(target: int) -> None:
    op.execute(
        "ALTER TABLE events " + ", ".join(f"ALTER COLUMN {c} SET STATISTICS {target}" for c in _COLUMNS)
    )


def upgrade() -> None:
    _set(SAMPLED_TARGET)


def downgrade() -> None:
    _set(-1)  # the server's default_statistics_target again

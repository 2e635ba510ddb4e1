"""events statistics: no planner statistics for the event payloads and the idempotency scope

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Why: autovacuum analyzes `events` again once a tenth of its rows is new, which on a young log is at
every visit of autovacuum's (every 12-20 s in the benchmark's runs). Measured on a log of 63,000
events, one `ANALYZE events` took 200-250 ms of a core, most of it building statistics nobody reads:
`data` and `metadata` are JSONB documents that no query compares whole (expressions over them get
default estimates whatever the column's statistics), and the idempotency index's scope expression
is evaluated, a regular expression per sampled row, only to describe an expression no query filters
on. With those three at statistics target 0 the same `ANALYZE` takes about 80 ms. Where PostgreSQL
shares cores with the server (the embedded one of `make run`, or a small host), that pause was the
largest stall in a node's delivery latency. The columns the planner does use (stream, type, user,
key, time, positions) keep the default target. Both statements take only a SHARE UPDATE EXCLUSIVE
lock: appends and reads go on while they run.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The scope expression is the third column of the idempotency index (engine/log/schema.py).
_SCOPE_COLUMN = 3
_INDEX = "uq_events_user_id_idempotency_key_scope_partition"


def _set(target: int) -> None:
    op.execute(
        f"ALTER TABLE events ALTER COLUMN data SET STATISTICS {target},"
        f" ALTER COLUMN metadata SET STATISTICS {target}"
    )
    op.execute(f"ALTER INDEX {_INDEX} ALTER COLUMN {_SCOPE_COLUMN} SET STATISTICS {target}")


def upgrade() -> None:
    _set(0)


def downgrade() -> None:
    _set(-1)  # the server's default_statistics_target again

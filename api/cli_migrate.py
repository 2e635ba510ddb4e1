"""`collab migrate`: move the schema up or down, saying what happened and refusing what would surprise.

Two surprises it guards against. Downgrading past the revision that creates the event log drops the
log, the one source of truth (projections can be rebuilt from it, the log from nothing), so it asks
first, or needs `--yes`. And Alembic treats "upgrade to an older revision" as nothing to do without a
word; here that says so and points to `--downgrade`.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from api.cli_errors import CliFailure
from engine.log import migrate
from engine.log.partitions import ensure_partitions

# The revision that creates `events` (migrations/versions/20261126_0001_event_log.py): undoing it
# drops the log.
EVENT_LOG_REVISION = "0001"
BASE = "base"

Confirm = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Revisions:
    """The migration scripts, oldest first, and the database's place among them."""

    order: tuple[str, ...]  # revision ids, oldest first
    current: str | None  # None: an empty database (base)

    @property
    def head(self) -> str:
        return self.order[-1]

    def index(self, revision: str | None) -> int:
        """Place in `order`; base is -1."""
        return -1 if revision is None else self.order.index(revision)

    def resolve(self, target: str) -> str | None:
        """`head`, `base`, a revision id (or a unique prefix of one) or `-N` (N below the current)."""
        if target == "head":
            return self.head
        if target == BASE:
            return None
        if re.fullmatch(r"-\d+", target):
            place = self.index(self.current) + int(target)
            if place < -1:
                raise CliFailure(
                    f"cannot go {target[1:]} revision(s) down from {_name(self.current)}",
                    f"The database is {self.index(self.current) + 1} revision(s) above base.",
                )
            return None if place == -1 else self.order[place]
        matches = [rev for rev in self.order if rev.startswith(target)]
        if len(matches) != 1:
            known = ", ".join([BASE, *self.order])
            raise CliFailure(f"unknown revision {target!r}", f"Known, oldest first: {known} (head).")
        return matches[0]


def load_revisions(url: str) -> Revisions:
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    order = tuple(reversed([rev.revision for rev in script.walk_revisions()]))
    return Revisions(order, migrate.current_revision(url))


def upgrade(url: str, target: str, partitions: int = 1) -> int:
    """Upgrade to `target`; at head, a new log then gets `partitions` partitions (LOG_PARTITIONS)."""
    migrate.check_known(url)
    revisions = load_revisions(url)
    wanted = revisions.resolve(target)
    current = revisions.current
    if revisions.index(wanted) < revisions.index(current):
        raise CliFailure(
            f"the database is at {_name(current)}, newer than {_name(wanted)}: an upgrade does nothing",
            f"To go back to {_name(wanted)}, downgrade: collab migrate --downgrade {_name(wanted)}",
        )
    if wanted == current:
        print(f"database schema already at {_name(current, revisions)}; nothing to do")
    else:
        _alembic(lambda: migrate.upgrade(url, wanted or BASE))
        print(f"database schema upgraded from {_name(current)} to {_name(wanted, revisions)}")
    if wanted == revisions.order[-1]:
        has = asyncio.run(ensure_partitions(url, partitions))
        if has != 1 or partitions != 1:
            kept = (
                "" if has == partitions else f" (it has events: LOG_PARTITIONS={partitions} does not apply)"
            )
            print(f"the log has {has} partition(s){kept}")
    return 0


def downgrade(url: str, target: str, *, yes: bool, data_dir: Path, confirm: Confirm | None = None) -> int:
    migrate.check_known(url)
    revisions = load_revisions(url)
    wanted = revisions.resolve(target)
    current = revisions.current
    if revisions.index(wanted) > revisions.index(current):
        raise CliFailure(
            f"the database is at {_name(current)}, older than {_name(wanted)}: a downgrade does nothing",
            f"To go forward to {_name(wanted)}, upgrade: collab migrate --revision {_name(wanted)}",
        )
    if wanted == current:
        print(f"database schema already at {_name(current, revisions)}; nothing to do")
        return 0
    undone = revisions.order[revisions.index(wanted) + 1 : revisions.index(current) + 1]
    if EVENT_LOG_REVISION in undone and not yes:
        loss = _event_log_loss(url, data_dir)
        if confirm is None:
            confirm = _ask if sys.stdin.isatty() else None
        if confirm is None:
            raise CliFailure(
                f"refusing to drop the event log without confirmation: {loss}",
                "Run again with --yes to drop it (there is no undo; back it up first, e.g. pg_dump).",
            )
        if not confirm(f"Downgrading to {_name(wanted)} drops the event log: {loss}"):
            print("nothing changed")
            return 1
    _alembic(lambda: migrate.downgrade(url, wanted or BASE))
    print(f"database schema downgraded from {_name(current)} to {_name(wanted)}")
    return 0


def _event_log_loss(url: str, data_dir: Path) -> str:
    """What dropping the log loses, in numbers: the log's head positions add up to its event count
    (positions are gapless in each partition), and stored files outlive it on disk."""

    async def head() -> int:
        db_engine = create_async_engine(url)
        try:
            async with db_engine.connect() as conn:
                # The sum of the heads: a schema before log partitions has one row, after it one per
                # partition.
                found = await conn.execute(text("SELECT sum(position) FROM log_head"))
                return int(found.scalar() or 0)
        finally:
            await db_engine.dispose()

    events = asyncio.run(head())
    files_dir = data_dir / "files"
    # Names starting with "." are storage's own (lock files, an upload's temporary file), never a file id.
    stored = (path for path in files_dir.rglob("*") if path.is_file() and not path.name.startswith("."))
    files = sum(1 for _ in stored) if files_dir.is_dir() else 0
    loss = f"{events:,} event(s), the only record of every room, cell, notification and upload"
    if files:
        loss += f"; the {files:,} stored file(s) in {files_dir} stay on disk with nothing referring to them"
    return loss


def _ask(question: str) -> bool:
    print(question, file=sys.stderr)
    try:
        answer = input("Type yes to drop it: ")
    except EOFError:
        return False
    return answer.strip().lower() == "yes"


def _alembic(run: Callable[[], None]) -> None:
    try:
        run()
    except CommandError as exc:
        raise CliFailure(f"migration failed: {exc}") from exc


def _name(revision: str | None, revisions: Revisions | None = None) -> str:
    if revision is None:
        return BASE
    return f"{revision} (head)" if revisions is not None and revision == revisions.head else revision


__all__ = ["EVENT_LOG_REVISION", "Revisions", "downgrade", "load_revisions", "upgrade"]

"""Pages of an inbox, newest first, with a cursor that stays put while notifications arrive."""

from __future__ import annotations

import pytest

from engine.features.notifications import NotificationPage, page
from engine.model.catalogue import NOTIFICATION_CREATED, NOTIFICATION_READ
from engine.model.errors import ValidationFailed
from engine.projections.notifications import Inbox, project
from tests.unit.event_log import Log


def inbox_of(count: int, read: tuple[int, ...] = ()) -> tuple[Log, Inbox]:
    log = Log()
    for n in range(1, count + 1):
        log.user("u", NOTIFICATION_CREATED, n, notification={"id": f"n{n}", "title": str(n)})
    for n in read:
        log.user("u", NOTIFICATION_READ, 100 + n, notification_id=f"n{n}")
    return log, project(log.events, "u")


def ids(found: NotificationPage) -> list[str]:
    return [n.id for _, n in found.items]


def test_page_of_an_empty_inbox() -> None:
    found = page(Inbox("u"))
    assert (found.items, found.next_cursor, found.unread_count) == ((), None, 0)


def test_pages_walk_newest_first_without_gap_or_repeat() -> None:
    _, inbox = inbox_of(5)
    first = page(inbox, limit=2)
    assert ids(first) == ["n5", "n4"]
    second = page(inbox, limit=2, before=first.next_cursor)
    assert ids(second) == ["n3", "n2"]
    last = page(inbox, limit=2, before=second.next_cursor)
    assert ids(last) == ["n1"]
    assert last.next_cursor is None


def test_a_full_last_page_has_no_next_cursor() -> None:
    _, inbox = inbox_of(4)
    assert page(inbox, limit=2, before=3).next_cursor is None


def test_cursor_stays_put_when_new_notifications_arrive() -> None:
    log, inbox = inbox_of(4)
    first = page(inbox, limit=2)
    log.user("u", NOTIFICATION_CREATED, 50, notification={"id": "n-new"})
    later = project(log.events, "u")
    assert ids(page(later, limit=2, before=first.next_cursor)) == ["n2", "n1"]


def test_unread_only_skips_read_ones_and_counts_the_whole_inbox() -> None:
    _, inbox = inbox_of(5, read=(5, 3))
    found = page(inbox, unread_only=True, limit=2)
    assert ids(found) == ["n4", "n2"]
    assert found.unread_count == 3
    assert ids(page(inbox, unread_only=True, limit=2, before=found.next_cursor)) == ["n1"]


@pytest.mark.parametrize(("limit", "before"), [(0, None), (1, 0), (1, -3)])
def test_page_refuses_a_bad_limit_or_cursor(limit: int, before: int | None) -> None:
    with pytest.raises(ValidationFailed):
        page(Inbox("u"), limit=limit, before=before)

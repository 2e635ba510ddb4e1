"""The notifications projection and the subscription filter rule."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest

from engine.model.catalogue import NOTIFICATION_CREATED, NOTIFICATION_READ, NOTIFICATIONS_SUBSCRIBED
from engine.projections.notifications import Filters, Inbox, Notification, apply, key_of, matches, project
from tests.unit.event_log import Log, at

SEED = {
    "id": "notif_123",
    "title": "New Comment",
    "message": "John commented on your sheet",
    "category": "workspace",
    "priority": "normal",
    "module_name": "tables",
}


def created(log: Log, user: str, seconds: float, **notification: Any) -> None:
    log.user(user, NOTIFICATION_CREATED, seconds, notification={**SEED, **notification})


def test_notifications_projection_created_is_unread() -> None:
    log = Log()
    created(log, "user_1", 5)
    inbox = project(log.events, "user_1")
    (notification,) = inbox.notifications.values()
    assert notification == Notification(**SEED, created_at=at(5))
    assert notification.as_dict() == SEED
    assert inbox.unread() == (notification,)


def test_notifications_projection_read_keeps_the_first_read_time() -> None:
    log = Log()
    created(log, "user_1", 1)
    created(log, "user_1", 2, id="notif_2")
    log.user("user_1", NOTIFICATION_READ, 3, notification_id="notif_123")
    log.user("user_1", NOTIFICATION_READ, 4, notification_id="notif_123")
    log.user("user_1", NOTIFICATION_READ, 5, notification_id="nope")
    inbox = project(log.events, "user_1")
    assert inbox.notifications["notif_123"].read_at == at(3)
    assert [n.id for n in inbox.unread()] == ["notif_2"]
    assert list(inbox.notifications) == ["notif_123", "notif_2"]


def test_notifications_projection_a_repeated_id_changes_nothing() -> None:
    log = Log()
    created(log, "user_1", 1)
    created(log, "user_1", 2, title="Another")
    assert project(log.events, "user_1").notifications["notif_123"].title == "New Comment"


def test_notifications_projection_keeps_the_filters_of_each_connection() -> None:
    log = Log()
    filters = {"categories": ["system"], "modules": None, "priorities": ["high", "critical"]}
    log.user("user_1", NOTIFICATIONS_SUBSCRIBED, 1, connection_id="c1", filters=filters)
    log.user("user_1", NOTIFICATIONS_SUBSCRIBED, 2, connection_id="c2", filters={})
    inbox = project(log.events, "user_1")
    assert inbox.subscriptions == {
        "c1": Filters(categories=("system",), priorities=("high", "critical")),
        "c2": Filters(),
    }
    assert inbox.subscriptions["c1"].as_dict() == filters


def test_notifications_projection_unread_with_filters_is_what_a_subscriber_gets() -> None:
    log = Log()
    created(log, "user_1", 1, id="a", category="system")
    created(log, "user_1", 2, id="b", category="workspace")
    inbox = project(log.events, "user_1")
    assert [n.id for n in inbox.unread(Filters(categories=("workspace",)))] == ["b"]


def test_notifications_projection_skips_other_users_and_concerns() -> None:
    log = Log()
    created(log, "user_1", 1)
    created(log, "user_2", 2)
    log.joined("r1", "user_1", "c1", 3)
    inbox = project(log.events, "user_1")
    assert list(inbox.notifications) == ["notif_123"] and inbox.user_id == "user_1"
    assert key_of(log.events[2]) is None and apply(inbox, log.events[2]) == inbox
    with pytest.raises(ValueError, match="user_2"):
        apply(inbox, log.events[1])


def test_notifications_projection_as_of_position_n() -> None:
    log = Log()
    created(log, "user_1", 1)
    log.user("user_1", NOTIFICATION_READ, 2, notification_id="notif_123")
    assert project(log.events[:1], "user_1").unread() != ()
    assert project(log.events[:2], "user_1").unread() == ()
    assert project([], "user_1") == Inbox("user_1")


# The filter matrix: delivered only when every given filter matches; absent or empty matches all.

CASES = {
    "absent": (None, True),
    "empty": ((), True),
    "match": (("x", "target"), True),
    "miss": (("x",), False),
}


@pytest.mark.parametrize(("c", "m", "p"), list(product(CASES, repeat=3)), ids="-".join)
def test_notifications_matches_only_when_every_given_filter_matches(c: str, m: str, p: str) -> None:
    notification = {**SEED, "category": "target", "module_name": "target", "priority": "target"}
    filters = Filters(categories=CASES[c][0], modules=CASES[m][0], priorities=CASES[p][0])
    expected = CASES[c][1] and CASES[m][1] and CASES[p][1]
    assert matches(filters, notification) is expected
    assert matches(filters, Notification(**notification, created_at=at(0))) is expected


def test_notifications_matches_the_seeds_subscription() -> None:
    filters = Filters.of(
        {"categories": ["system", "workspace"], "modules": ["tables", "ai"], "priorities": ["normal", "high"]}
    )
    assert matches(filters, SEED)
    assert not matches(filters, {**SEED, "module_name": "project_management"})
    assert not matches(filters, {**SEED, "priority": None})  # a given filter needs the field
    assert matches(None, {"id": "bare"})
    assert matches(Filters(), {"id": "bare"})

"""The declared-statuses projection as given events -> expected view."""

from __future__ import annotations

import pytest

from engine.model.catalogue import USER_STATUS_CHANGED
from engine.projections.declared_statuses import DeclaredStatus, apply, key_of, project
from tests.unit.event_log import Log, at


def test_declared_statuses_a_user_who_never_declared_has_none() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    assert project(log.events, "alice") is None


def test_declared_statuses_the_newest_declaration_wins_and_survives_leaving() -> None:
    log = Log()
    log.joined("r1", "alice", "c1", 1)
    log.user("alice", USER_STATUS_CHANGED, 2, status="busy")
    log.user("bob", USER_STATUS_CHANGED, 3, status="away")
    log.user("alice", USER_STATUS_CHANGED, 4, status="away")
    log.left("r1", "alice", "c1", 5)
    assert project(log.events, "alice") == DeclaredStatus("alice", "away", at(4))
    assert project(log.events, "bob") == DeclaredStatus("bob", "away", at(3))


def test_declared_statuses_only_the_users_own_stream_feeds_it() -> None:
    log = Log()
    joined = log.joined("r1", "alice", "c1", 1)
    declared = log.user("alice", USER_STATUS_CHANGED, 2, status="busy")
    assert key_of(joined) is None and key_of(declared) == "alice"


def test_declared_statuses_refuse_another_users_event() -> None:
    log = Log()
    declared = log.user("bob", USER_STATUS_CHANGED, 1, status="busy")
    with pytest.raises(ValueError, match="bob"):
        apply(DeclaredStatus("alice", "online", at(0)), declared)

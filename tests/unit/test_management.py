"""Admin posts without a database: which bodies may be posted, how a posted message renders live and in
replay, and the direct-messages projection."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.features.admin import check_posted
from engine.model.catalogue import ROOM_MESSAGE_BROADCAST, USER_JOINED_ROOM, USER_MESSAGE_SENT
from engine.model.errors import ValidationFailed
from engine.projections import direct_messages
from engine.projections.rooms import project as project_room
from engine.protocol import RESERVED_TYPES, iso
from engine.protocol.rendering import ReplayRenderer, render
from tests.unit.event_log import Log, at

ANNOUNCEMENT = {"type": "system_announcement", "title": "Maintenance Notice", "message": "in 30 minutes"}
DIRECT = {"type": "direct_message", "from": "admin", "message": "Please review the updated document"}


def test_check_posted_passes_a_seed_body_through_as_a_copy() -> None:
    checked = check_posted(ANNOUNCEMENT)
    assert checked == ANNOUNCEMENT and checked is not ANNOUNCEMENT
    assert check_posted({"type": "custom", "nested": {"seq": 1}}) == {"type": "custom", "nested": {"seq": 1}}


@pytest.mark.parametrize("kind", sorted(RESERVED_TYPES))
def test_check_posted_refuses_every_protocol_server_type(kind: str) -> None:
    with pytest.raises(ValidationFailed, match="reserved"):
        check_posted({**ANNOUNCEMENT, "type": kind})


@pytest.mark.parametrize(
    "body",
    [{"title": "no type"}, {"type": ""}, {"type": "  "}, {"type": 3}, {"type": None}],
    ids=["missing", "empty", "blank", "number", "null"],
)
def test_check_posted_needs_a_non_empty_string_type(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed, match="non-empty string 'type'"):
        check_posted(body)


@pytest.mark.parametrize("key", ["room_id", "seq", "ts", "client_msg_id"])
def test_check_posted_refuses_the_envelopes_keys(key: str) -> None:
    with pytest.raises(ValidationFailed, match=key):
        check_posted({**ANNOUNCEMENT, key: "forged"})


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({**ANNOUNCEMENT, "count": 2**70}, "plain JSON"),
        ({**ANNOUNCEMENT, "message": "a\x00b"}, "NUL"),
        ({**ANNOUNCEMENT, "nested": {"deep": ["\x00"]}}, "NUL"),
    ],
    ids=["huge-integer", "nul", "nested-nul"],
)
def test_check_posted_refuses_what_the_log_cannot_hold(body: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationFailed, match=match):
        check_posted(body)


def test_render_room_broadcast_is_the_body_with_the_rooms_envelope() -> None:
    log = Log()
    log.room("r1", USER_JOINED_ROOM, 0, user_id="alice", username="alice", email=None, connection_id="c1")
    event = log.room("r1", ROOM_MESSAGE_BROADCAST, 2, user_id="admin", message=ANNOUNCEMENT)
    assert render(event, None) == [{**ANNOUNCEMENT, "room_id": "r1", "seq": 2, "ts": iso(at(2))}]


def test_render_user_message_carries_the_users_seq_and_no_room() -> None:
    event = Log().user("u1", USER_MESSAGE_SENT, 4, sender_id="admin", message=DIRECT, message_id="msg_1")
    assert render(event, None) == [{**DIRECT, "seq": 1, "ts": iso(at(4)), "notification_id": "msg_1"}]


def test_replay_renderer_replays_a_broadcast_as_it_was_sent_live() -> None:
    log = Log()
    join = log.room(
        "r1", USER_JOINED_ROOM, 0, user_id="alice", username="alice", email=None, connection_id="c1"
    )
    posted = log.room("r1", ROOM_MESSAGE_BROADCAST, 1, user_id="admin", message=ANNOUNCEMENT)
    before = project_room([join], "r1")
    replay = ReplayRenderer(before, lambda view: {})
    frames = replay(posted)
    assert frames is not None
    assert [orjson.loads(f) for f in frames] == render(posted, None)
    assert replay.view.messages_sent == before.messages_sent + 1 and replay.view.seq == 2


def test_direct_messages_projection_keeps_each_message_with_its_seq_in_order() -> None:
    log = Log()
    log.user("u1", USER_MESSAGE_SENT, 1, sender_id="admin", message=DIRECT)
    log.user("u2", USER_MESSAGE_SENT, 2, sender_id="admin", message=DIRECT)
    log.room("r1", ROOM_MESSAGE_BROADCAST, 3, user_id="admin", message=ANNOUNCEMENT)
    log.user("u1", USER_MESSAGE_SENT, 4, sender_id="root", message={**DIRECT, "message": "again"})
    mailbox = direct_messages.project(log.events, "u1")
    assert [(m.seq, m.sender_id, m.message["message"], m.received_at) for m in mailbox.messages] == [
        (1, "admin", DIRECT["message"], at(1)),
        (2, "root", "again", at(4)),
    ]
    assert mailbox.seq == 2
    assert direct_messages.project(log.events[:1], "u1").seq == 1  # as of an earlier point: a replay


def test_direct_messages_projection_refuses_another_users_message() -> None:
    event = Log().user("u2", USER_MESSAGE_SENT, 1, sender_id="admin", message=DIRECT)
    with pytest.raises(ValueError, match="u2"):
        direct_messages.apply(direct_messages.Mailbox("u1"), event)

"""The pure parts of REST file bodies: who owns a file id (first claim in the log), who may read
it, how often progress is reported, filenames, and the download's Content-Disposition."""

from __future__ import annotations

import pytest

from api.attachments import content_disposition
from engine.features.files import checked_filename, percentage, shared_file
from engine.features.upload_body import PROGRESS_MIN_BYTES, progress_step
from engine.model.actors import Actor
from engine.model.catalogue import FILE_UPLOAD_COMPLETED, FILE_UPLOAD_STARTED
from engine.model.errors import ValidationFailed
from tests.unit.event_log import Log

START = {"file_id": "f1", "filename": "a.png", "file_size": 10, "mime_type": "image/png"}
DONE = {"file_id": "f1", "filename": "a.png", "url": "/api/v1/files/f1", "size": 10, "sha256": "ab" * 32}


def test_shared_file_of_no_claims_is_none() -> None:
    log = Log()
    log.user("alice", FILE_UPLOAD_STARTED, **{**START, "file_id": "other"})
    assert shared_file(log.events, "f1") is None


def test_shared_file_belongs_to_the_first_claim_and_ignores_later_ones() -> None:
    log = Log()
    log.user("alice", FILE_UPLOAD_STARTED, 1, **START)
    log.user("bob", FILE_UPLOAD_STARTED, 2, **{**START, "filename": "evil.png"})
    log.user("bob", FILE_UPLOAD_COMPLETED, 3, **{**DONE, "room_id": "bobs-room"})
    found = shared_file(log.events, "f1")
    assert found is not None
    assert found.owner == "alice"
    assert found.upload.filename == "a.png"
    assert not found.upload.complete
    assert found.room_id is None


def test_shared_file_takes_the_room_of_its_completion() -> None:
    log = Log()
    log.user("alice", FILE_UPLOAD_STARTED, 1, **{**START, "room_id": None})
    log.user("alice", FILE_UPLOAD_COMPLETED, 2, **{**DONE, "room_id": "team-1", "mime_type": "image/png"})
    found = shared_file(log.events, "f1")
    assert found is not None
    assert found.upload.complete
    assert (found.room_id, found.upload.sha256, found.upload.size) == ("team-1", "ab" * 32, 10)


@pytest.mark.parametrize(
    ("actor", "in_room", "readable"),
    [
        (Actor("alice", "alice"), False, True),
        (Actor("root", "root", roles=("admin",)), False, True),
        (Actor("carol", "carol"), True, True),
        (Actor("carol", "carol"), False, False),
    ],
)
def test_shared_file_is_readable_by_owner_admin_and_room_readers(
    actor: Actor, in_room: bool, readable: bool
) -> None:
    log = Log()
    log.user("alice", FILE_UPLOAD_COMPLETED, 1, **{**DONE, "room_id": "team-1"})
    found = shared_file(log.events, "f1")
    assert found is not None
    assert found.readable_by(actor, in_room=in_room) is readable


def test_an_unfinished_file_is_readable_by_nobody() -> None:
    log = Log()
    log.user("alice", FILE_UPLOAD_STARTED, 1, **START)
    found = shared_file(log.events, "f1")
    assert found is not None
    assert not found.readable_by(Actor("alice", "alice"), in_room=True)


def test_progress_step_is_five_percent_but_never_below_the_minimum() -> None:
    assert progress_step(None) == PROGRESS_MIN_BYTES
    assert progress_step(1024) == PROGRESS_MIN_BYTES
    assert progress_step(100 * 1024 * 1024) == 5 * 1024 * 1024


def test_percentage_is_bounded_and_zero_for_an_unknown_total() -> None:
    assert percentage(50, 200) == 25.0
    assert percentage(300, 200) == 100.0
    assert percentage(10, None) == 0.0
    assert percentage(10, 0) == 0.0


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "a\x00b", "..", "", "x" * 256, "a\tb"])
def test_checked_filename_refuses_paths_and_control_characters(name: str) -> None:
    with pytest.raises(ValidationFailed):
        checked_filename(name)


def test_checked_filename_keeps_ordinary_names() -> None:
    assert checked_filename("Q3 report (final) €.xlsx") == "Q3 report (final) €.xlsx"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("a.png", "attachment; filename=\"a.png\"; filename*=UTF-8''a.png"),
        ('x".png', "attachment; filename=\"x_.png\"; filename*=UTF-8''x%22.png"),
        ("é;b.png", "attachment; filename=\"_;b.png\"; filename*=UTF-8''%C3%A9%3Bb.png"),
        (
            "a\r\nSet-Cookie: x",
            "attachment; filename=\"a__Set-Cookie: x\"; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x",
        ),
    ],
)
def test_content_disposition_cannot_be_broken_out_of(name: str, header: str) -> None:
    assert content_disposition(name) == header

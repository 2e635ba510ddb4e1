"""The settings a node's sessions start with: PostgreSQL drops a session whose host went silent
within the bound the node's peers use to count it dead."""

from __future__ import annotations

import math

import pytest

from engine.log.session_settings import session_settings


def test_every_session_commits_durably_and_carries_its_name_when_given() -> None:
    assert session_settings() == {"synchronous_commit": "on"}
    assert session_settings(name="collab n1") == {"synchronous_commit": "on", "application_name": "collab n1"}


def test_the_default_bound_probes_after_five_seconds_and_drops_at_eleven() -> None:
    settings = session_settings(vanish_within=15.0)
    assert {key: settings[key] for key in settings if key.startswith("tcp_")} == {
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "10000",
    }


@pytest.mark.parametrize("within", [6.0, 7.5, 15.0, 60.0, 600.0])
def test_a_silent_session_is_dropped_within_the_bound(within: float) -> None:
    settings = session_settings(vanish_within=within)
    idle, interval, count = (int(settings[f"tcp_keepalives_{key}"]) for key in ("idle", "interval", "count"))
    user_timeout = int(settings["tcp_user_timeout"]) / 1000
    # Linux: the first probe due once the user timeout has passed (the count is not used).
    assert idle + math.ceil(max(0.0, user_timeout - idle) / interval) * interval <= within
    # Where there is no user timeout: the last of the probes.
    assert idle + interval * count <= within


@pytest.mark.parametrize("within", [0.5, 1.0, 2.0])
def test_a_bound_under_the_settings_resolution_still_probes_each_second(within: float) -> None:
    settings = session_settings(vanish_within=within)
    assert settings["tcp_keepalives_idle"] == settings["tcp_keepalives_interval"] == "1"
    assert int(settings["tcp_user_timeout"]) >= 1000  # zero would mean the kernel's default

"""The settings every database session of the engine starts with.

A node's partition locks (engine/log/partition_locks.py) live as long as its sessions, and PostgreSQL
ends a session only once it learns that the other end is gone. A process that dies has its sockets
closed by its kernel, so its locks go at once; a host that vanishes (power lost, a network cut) sends
nothing, and with the kernel's keepalive defaults the server would keep its sessions, and its locks,
for over two hours. So a node asks the server to probe each of its sessions once it has been quiet a
while and to drop it when the probes, or data it sent, go unanswered: within `vanish_within` seconds
(the node heartbeat's `NODE_DEAD_AFTER_SECONDS`), the same bound after which its peers count it dead.
PostgreSQL ignores these four settings on a Unix socket, where no host can vanish.
"""

from __future__ import annotations

# Unanswered keepalive probes after which the server's kernel drops the connection.
_PROBES = 3


def session_settings(*, name: str | None = None, vanish_within: float | None = None) -> dict[str, str]:
    """Startup settings for a session: durable commits always, `name` as its `application_name`
    (how peers see the node alive: engine/cluster/registry.py), and with `vanish_within` the
    server-side keepalive that ends the session within about that many seconds of its host going
    silent (at least about 2 s: the settings count whole seconds)."""
    # Durability is not negotiable per server config: an acked append must survive a crash.
    settings = {"synchronous_commit": "on"}
    if name is not None:
        settings["application_name"] = name
    if vanish_within is not None:
        # Probes start after a third of the bound and follow each other at a sixth: the last is
        # due by five sixths. A connection with unacknowledged data gets no probes; the user
        # timeout drops it after two thirds of the bound without an acknowledgement, and with
        # probes out it also decides when an idle one is dropped.
        settings |= {
            "tcp_keepalives_idle": str(max(1, int(vanish_within / 3))),
            "tcp_keepalives_interval": str(max(1, int(vanish_within / 6))),
            "tcp_keepalives_count": str(_PROBES),
            "tcp_user_timeout": str(max(1000, int(vanish_within * 2000 / 3))),
        }
    return settings


__all__ = ["session_settings"]

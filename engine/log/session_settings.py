"""The settings every database session of the engine starts with.

A node's partition locks (engine/log/partition_locks.py) live as long as its sessions, and PostgreSQL
ends a session only once it learns that the other end is gone. A process that dies has its sockets
closed by its kernel, so its locks go at once; a host that vanishes (power lost, a network cut) sends
nothing, and with the kernel's keepalive defaults the server would keep its sessions, and its locks,
for over two hours. So a node asks the server to probe each of its sessions once it has been quiet a
while and to drop it when the probes, or data it sent, go unanswered: within `vanish_within` seconds
(the node heartbeat's `NODE_DEAD_AFTER_SECONDS`), the same bound after which its peers count it dead.
PostgreSQL ignores these four settings on a Unix socket, where no host can vanish.

The price: a node that stops reading a session for two thirds of the bound while the server has more
to send than the socket buffers hold (its event loop stalled in the middle of a large result) is
taken for vanished too, and loses that session; its peers would count it dead a third later anyway.
"""

from __future__ import annotations

# The bound for sessions of no node (migrations, a new log's split): NODE_DEAD_AFTER_SECONDS's default.
# They hold locks that others wait for too.
UNATTACHED_VANISH_WITHIN = 15.0

# Unanswered keepalive probes after which the server's kernel drops the connection, where it has no
# user timeout (Linux has: there the user timeout decides, see below).
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
        # Probes start after a third of the bound and follow each other at a sixth. On Linux the
        # user timeout then decides: an idle connection is dropped at the first probe due once two
        # thirds of the bound have passed without an answer (5 + 3 x 2 = 11 s of 15), and one with
        # data unacknowledged, or a window shut, that long is dropped too (such a connection gets
        # no probes). Elsewhere the third probe unanswered drops it, by five sixths of the bound.
        settings |= {
            "tcp_keepalives_idle": str(max(1, int(vanish_within / 3))),
            "tcp_keepalives_interval": str(max(1, int(vanish_within / 6))),
            "tcp_keepalives_count": str(_PROBES),
            "tcp_user_timeout": str(max(1000, int(vanish_within * 2000 / 3))),
        }
    return settings


__all__ = ["UNATTACHED_VANISH_WITHIN", "session_settings"]

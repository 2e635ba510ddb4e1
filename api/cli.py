"""`collab`: serve the engine, migrate its schema, mint tokens.

The CLI only parses arguments and wires the pieces together; URL resolution, the JWT secret and token
minting live in their own modules so the app and the tests use the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from api.cli_errors import (
    CliFailure,
    check_port_free,
    describe_server,
    invalid_settings,
    starting_embedded_postgres,
    talking_to_database,
)
from api.database_url import normalise_database_url, resolve_database_url
from api.jwt_secret import JwtSecretError, resolve_jwt_secret
from api.logging_setup import configure_logging, logging_config
from api.server import uvicorn_options
from api.settings import Settings, get_settings
from api.tokens import TokenConfigError, mint_token, parse_ttl
from engine.model.errors import EngineError, SchemaMismatch

if TYPE_CHECKING:
    from engine.cluster.repartition import TargetFailed

ROLES = ("admin", "editor", "viewer", "auditor")
DEMO_USER = "demo-user"
DEMO_TTL = timedelta(hours=12)
WS_PATH = "/api/v1/ws"
# People `collab serve` prints browser links for: (user id, role, page). Two editors to try the sheet
# together, an auditor for the replay, an admin for the console.
DEMO_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("alice", "editor", "/app?room=demo&sheet=budget"),
    ("bob", "editor", "/app?room=demo&sheet=budget"),
    ("audra", "auditor", "/console?tab=audit&room=demo"),
    ("root", "admin", "/console"),
)


def _ttl(text: str) -> timedelta:
    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab", description="Serve the engine, migrate its schema, mint tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate to head, print a token, run the server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive_int, default=1, help="uvicorn worker processes")

    migrate = commands.add_parser("migrate", help="upgrade (default: to head) or downgrade the schema")
    target = migrate.add_mutually_exclusive_group()
    target.add_argument("--revision", default="head", help="revision to upgrade to (default: head)")
    target.add_argument("--downgrade", metavar="REV", help="revision to downgrade to, e.g. base or -1")
    migrate.add_argument(
        "--yes", action="store_true", help="with --downgrade: drop the event log without asking"
    )

    projections = commands.add_parser(
        "projections", help="rebuild or check the projection tables, or keep them in a process of their own"
    )
    projection_commands = projections.add_subparsers(dest="projections_command", required=True)
    rebuild = projection_commands.add_parser(
        "rebuild", help="replay the log into every projection table (--check: only compare)"
    )
    rebuild.add_argument(
        "--check", action="store_true", help="print differences, exit 1 if any; change nothing"
    )
    rebuild.add_argument(
        "--partition",
        type=int,
        metavar="P",
        help="only this partition of the log (default: every one); the others are not touched",
    )
    projection_commands.add_parser(
        "run",
        help="keep the projection tables following the log until stopped, so serving nodes need not "
        "(they stand by and take over if this process stops)",
    )

    repartition = commands.add_parser(
        "repartition",
        help="copy the log (DATABASE_URL, no node running on it) into an empty database as a log of "
        "another number of partitions, and rebuild the copy's tables",
    )
    repartition.add_argument(
        "--partitions", type=_positive_int, required=True, metavar="P", help="the new log's partition count"
    )
    repartition.add_argument(
        "--into",
        required=True,
        metavar="URL",
        help="the target database: new (no schema) or holding an empty log; nothing may serve it yet",
    )

    token = commands.add_parser("token", help="print a signed JWT for a user")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--username")
    token.add_argument("--email")
    token.add_argument(
        "--role",
        dest="roles",
        action="extend",
        nargs="+",
        choices=ROLES,
        metavar="ROLE",
        help=f"one or more of {', '.join(ROLES)} (default: editor)",
    )
    token.add_argument(
        "--rooms",
        action="extend",
        nargs="+",
        metavar="PATTERN",
        help="glob patterns of room ids the user may join (default: any)",
    )
    token.add_argument("--ttl", type=_ttl, default=timedelta(hours=1), help="30s, 15m, 1h, 7d (default 1h)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except CliFailure as failure:
        return _fail(failure, failure.lines())
    except SchemaMismatch as exc:
        fix = "Run the newer collab-engine that migrated it, or point DATABASE_URL at another database."
        return _fail(exc, CliFailure(str(exc), fix).lines())
    except (TokenConfigError, JwtSecretError, EngineError) as exc:
        # Problems the operator can fix (a JWT setting, the secret file): their text says how.
        return _fail(exc, [f"collab: {exc}"])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _fail(
            exc,
            [
                f"collab: unexpected error: {type(exc).__name__}: {exc}",
                "  Run again with LOG_LEVEL=DEBUG for the traceback, and report it.",
            ],
        )


def _run(args: argparse.Namespace) -> int:
    settings = _load_settings()
    if args.command == "token":
        return _token(args, settings)
    serving = args.command == "serve" or getattr(args, "projections_command", None) == "run"
    _configure_logging(settings if serving else None)
    if args.command == "migrate":
        return _migrate(args, settings)
    if args.command == "projections":
        return _projections(args, settings)
    if args.command == "repartition":
        return _repartition(args, settings)
    return _serve(args, settings)


def _fail(exc: BaseException, lines: list[str]) -> int:
    """Print what went wrong (after the traceback, with LOG_LEVEL=DEBUG); exit status 1."""
    if _debugging():
        traceback.print_exception(exc, file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)
    return 1


def _debugging() -> bool:
    try:
        level = get_settings().log_level
    except (SettingsError, ValidationError):  # the settings are what failed: read the variable itself
        level = os.environ.get("LOG_LEVEL", "")
    return level.upper() == "DEBUG"


def _load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    except SettingsError as exc:
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1).upper() if found else "a setting"
        raise CliFailure(
            f"invalid setting: {name}: {exc.__cause__ or exc}",
            "Fix it in the environment or in .env; the README's settings table lists every setting.",
        ) from exc


def _database_url(settings: Settings, *, stop_at_exit: bool = True) -> str:
    """DATABASE_URL, or the embedded server's (started here), with a start failure explained."""
    if settings.database_url:
        return resolve_database_url(settings)
    with starting_embedded_postgres(settings.data_dir):
        return resolve_database_url(settings, stop_at_exit=stop_at_exit)


def _configure_logging(settings: Settings | None) -> None:
    """The server logs in LOG_FORMAT (api/logging_setup.py); one-off commands in text."""
    if settings is None:
        configure_logging("text")
    else:
        configure_logging(settings.log_format, settings.log_level)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, containers); harmless here.
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    token = mint_token(
        settings,
        sub=args.sub,
        username=args.username,
        email=args.email,
        roles=args.roles,
        rooms=args.rooms,
        ttl=args.ttl,
    )
    print(token)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from api import cli_migrate  # imported here: `collab token` should not pay for Alembic

    url = _database_url(settings)
    with talking_to_database(url):
        if args.downgrade:
            return cli_migrate.downgrade(url, args.downgrade, yes=args.yes, data_dir=settings.data_dir)
        return cli_migrate.upgrade(url, args.revision, settings.log_partitions)


def _projections(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from engine.log import migrate
    from engine.log.store import create_db_engine
    from engine.model.errors import ValidationFailed
    from engine.readmodels import rebuild

    url = _database_url(settings)
    with talking_to_database(url):
        migrate.check_known(url)
    if args.projections_command == "run":
        return _project(url, settings)

    async def run() -> int:
        # A rebuild holds the partitions' heads: not past its host's vanishing.
        db_engine = create_db_engine(
            url, pool_size=2, command_timeout=600, vanish_within=settings.node_dead_after_seconds
        )
        try:
            if args.check:
                differences = await rebuild.diff_all(db_engine, partition=args.partition)
                for line in differences:
                    print(line)
                print(f"projection tables: {len(differences)} difference(s) from the log")
                return 1 if differences else 0
            full = await rebuild.rebuild_all(db_engine, partition=args.partition)
            report, projected = full.cells, full.projections
            one_asked = args.partition is not None
            print(
                f"rebuilt cells and sheets at {_positions(report.heads, one_asked=one_asked)}: "
                f"{report.events_read} events read "
                f"({report.cell_updates} cell updates), {report.sheets} sheets, {report.cells} cells, "
                f"{report.seconds:.2f}s"
            )
            rows = ", ".join(f"{count} {table}" for table, count in projected.rows.items())
            at = _positions(projected.heads, one_asked=one_asked)
            print(f"rebuilt projection tables at {at}: {rows}, {projected.seconds:.2f}s")
            return 0
        except ValidationFailed as refused:  # a --partition the log does not have
            print(f"--{refused.message}", file=sys.stderr)
            return 2
        finally:
            await db_engine.dispose()

    with talking_to_database(url):
        return asyncio.run(run())


def _repartition(args: argparse.Namespace, settings: Settings) -> int:
    """Move the log into another database in `--partitions` partitions (engine/cluster/repartition.py)."""
    import asyncio

    from engine.cluster.repartition import MoveRefused, TargetFailed, check_reachable, move_log

    source = _database_url(settings)
    target = normalise_database_url(args.into)
    # The target's schema is a step of the move, not news: the report says what was moved.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with talking_to_database(target, named=_INTO):  # first, so a failure there is not blamed on the source
        asyncio.run(check_reachable(target))
    with talking_to_database(source):
        try:
            report = asyncio.run(move_log(source, target, args.partitions))
        except MoveRefused as refused:
            said = refused.message if refused.copied else f"nothing moved: {refused.message}"
            raise CliFailure(said, refused.fix) from refused
        except TargetFailed as failed:
            raise _target_failure(failed, target) from failed
    print(
        f"moved {report.events} event(s) of {report.streams} stream(s) from a log of "
        f"{report.source_partitions} partition(s) into one of {len(report.heads)}: "
        f"{_positions(report.heads)}; {report.blocks} rate-limit block(s) carried over"
    )
    rows = ", ".join(f"{count} {table}" for table, count in report.rebuilt.projections.rows.items())
    print(f"rebuilt {report.rebuilt.cells.cells} cells, {report.rebuilt.cells.sheets} sheets, {rows}")
    print(f"done in {report.seconds:.1f}s; point DATABASE_URL at the new database and start the nodes")
    return 0


_INTO = "the --into URL"


def _target_failure(failed: TargetFailed, target: str) -> CliFailure:
    """The target's database failed midway (reaching it was checked first): what it said, and what
    that leaves behind. Its server's log says why; this command cannot."""
    from sqlalchemy.engine import make_url

    where = f"{make_url(target).database} at {describe_server(target)}"
    fix = (
        "The source is unchanged; see that server's log, then drop and create the target again and "
        "move again."
        if failed.written
        else "The source is unchanged and nothing was copied; see that server's log and move again "
        "once it is fixed."
    )
    return CliFailure(f"the move failed on the target database {where}: {failed.message}", fix)


def _positions(heads: dict[int, int], *, one_asked: bool = False) -> str:
    """ "position 12" in a log of one partition, "positions 0:12 1:40" in a log of several, "partition
    1 position 40" for the one partition asked for."""
    if one_asked:
        ((partition, head),) = heads.items()
        return f"partition {partition} position {head}"
    if len(heads) == 1:
        return f"position {next(iter(heads.values()))}"
    return "positions " + " ".join(f"{partition}:{head}" for partition, head in sorted(heads.items()))


def _project(url: str, settings: Settings) -> int:
    """Run the projector runner alone. Every engine process has a runner, but a partition is
    projected only by the one holding its advisory lock (engine/readmodels/runner.py): started before
    the servers, this process takes every partition's lock and their runners stand by, which takes
    the folding and the table writes off the serving path; if it stops, theirs take over within half
    a second. It has no commits of its own to wake it, so it looks at the log head every
    PROJECTION_INTERVAL_MS."""
    import asyncio

    from engine.log.store import create_db_engine
    from engine.readmodels.runner import ProjectorRunner

    interval = settings.projection_interval_ms / 1000

    async def run() -> int:
        # Its partitions' locks go with its sessions, also when its host vanishes.
        db_engine = create_db_engine(url, pool_size=2, vanish_within=settings.node_dead_after_seconds)
        runner = ProjectorRunner(db_engine, poll_seconds=max(interval, 0.05), min_interval=interval)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner.start()
        print("projecting the log into the projection tables; Ctrl-C stops", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.stop()
            await db_engine.dispose()
        print(f"stopped after {runner.events_applied} events in {runner.steps_applied} steps", flush=True)
        return 0

    with talking_to_database(url):
        return asyncio.run(run())


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from engine.log.migrate import upgrade_to_head

    check_port_free(args.host, args.port)  # before the database starts and the banner prints
    # Resolved once, here in the parent: it owns the embedded server (stopped when it exits), and the
    # workers, which uvicorn spawns as fresh interpreters, inherit the URL and secret from the
    # environment instead of each starting a server or generating a secret.
    url = _database_url(settings, stop_at_exit=True)
    secret = resolve_jwt_secret(settings)
    os.environ["DATABASE_URL"] = url
    os.environ["JWT_SECRET_KEY"] = secret
    get_settings.cache_clear()  # with one worker the app runs in this process and must see them too

    with talking_to_database(url):
        upgrade_to_head(url, settings.log_partitions)
    token = mint_token(
        settings, sub=DEMO_USER, username=DEMO_USER, roles=["editor"], ttl=DEMO_TTL, secret=secret
    )
    people = {
        (user, role, page): mint_token(
            settings, sub=user, username=user, roles=[role], ttl=DEMO_TTL, secret=secret
        )
        for user, role, page in DEMO_PEOPLE
    }
    database = _describe_database(settings, url)
    print(connect_instructions(args.host, args.port, token, database, people=people), flush=True)

    options = uvicorn_options(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that kills the
    # process before atexit runs, leaving the embedded PostgreSQL behind. As SystemExit it exits
    # normally, and the embedded server is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # The same logging in every worker; the app's middleware writes the access lines (with request ids).
    options["log_config"] = logging_config(settings.log_format, settings.log_level)
    options["access_log"] = False
    if args.workers > 1:
        import uvicorn

        # An admin shutdown (POST /ws/shutdown) stops the worker that answered; uvicorn replaces it.
        options["workers"] = args.workers
        uvicorn.run("api.app:create_serving_app", factory=True, host=args.host, port=args.port, **options)
        return 0
    return _serve_one_process(args.host, args.port, options)


def _serve_one_process(host: str, port: int, options: dict[str, Any]) -> int:
    """uvicorn's `run` for one process, with the app's exit hook wired to the server: an admin shutdown
    then ends it like Ctrl-C does, with status 0, rather than by SIGTERM (status 143)."""
    import uvicorn

    from api.app import create_serving_app

    app = create_serving_app()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    app.state.request_exit = lambda: setattr(server, "should_exit", True)
    # uvicorn re-raises Ctrl-C after its graceful shutdown; that is the normal way to stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1  # a failed start has been logged by uvicorn


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _display_host(host: str) -> str:
    """A host a client can dial: wildcard binds are reached through loopback; IPv6 needs brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _describe_database(settings: Settings, url: str) -> str:
    if not settings.database_url:
        return f"embedded PostgreSQL in {(settings.data_dir / 'pg').resolve()}"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def browser_links(base_url: str, people: Mapping[tuple[str, str, str], str]) -> list[str]:
    """One line per demo person: who, and the page with their token in the URL fragment, which
    browsers never send to the server (the page reads it and keeps it out of logs and history)."""
    width = max((len(f"{user} ({role})") for user, role, _ in people), default=0)
    return [
        f"  {f'{user} ({role})':<{width}}  {base_url}{page}#token={token}"
        for (user, role, page), token in people.items()
    ]


def connect_instructions(
    host: str,
    port: int,
    token: str,
    database: str,
    *,
    people: Mapping[tuple[str, str, str], str] | None = None,
) -> str:
    """What `collab serve` prints: where it listens, browser links for demo people, a token, and
    copy-paste ways to connect with it."""
    base = f"{_display_host(host)}:{port}"
    ws_url = f"ws://{base}{WS_PATH}?token={token}"
    opened = []
    hours = DEMO_TTL.total_seconds() / 3600
    if people:
        opened = [
            f"Open in a browser (each link signs in as that person, valid {hours:g}h):",
            *browser_links(f"http://{base}", people),
            f"API reference: http://{base}/docs",
            "",
        ]
    return "\n".join(
        [
            "",
            f"collab-engine starting on http://{base}  (database: {database})",
            "",
            *opened,
            f"Token for {DEMO_USER!r} (role editor, valid {DEMO_TTL.total_seconds() / 3600:g}h);"
            " mint others with `collab token --sub ID --role ROLE`:",
            f"  {token}",
            "",
            "Connect from a shell:",
            f"  {sys.executable} -m websockets '{ws_url}'",
            "or from a browser console:",
            f'  const ws = new WebSocket("{ws_url}");',
            "  ws.onmessage = (e) => console.log(e.data);",
            '  ws.onopen = () => ws.send(JSON.stringify({type: "join_room", room_id: "workspace_123"}));',
            "and in the shell client, once connected, type:",
            '  {"type":"join_room","room_id":"workspace_123"}',
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

"""Schemathesis against the running app's own `/openapi.json`, on the real database: every operation
it lists (whoever added it) is called with generated valid and invalid requests, twice over:

- with an admin token (past every role check): never 5xx, and answers as its schema says;
- with no token at all: never 5xx, and every operation the schema marks as needing a token answers 401
  (none lets a caller without one through, whatever the parameters).

The server runs on this test's event loop, so the synchronous Hypothesis run goes to a thread; it is
bounded by a few dozen examples per operation and mode (about a minute in all), and a deadline per
example.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.api.conftest import Server, make_settings, serve

# It stops the server under test; its own tests cover it.
EXCLUDED = [("POST", "/api/v1/ws/shutdown")]
EXAMPLE_DEADLINE = timedelta(seconds=5)  # one request; a hang, not slowness, is what this catches
RUN_TIMEOUT = 180  # seconds; both passes take about a minute on the 2-core VM


def refused_without_token(ctx: CheckContext, response: Response, case: schemathesis.Case) -> bool | None:
    """An operation whose schema asks for a bearer token answers a call without one with 401. The one
    answer that may come first: a body that is not JSON at all, which FastAPI refuses (400 or 422,
    `json_invalid`) before it runs any dependency, authentication included; it reveals nothing."""
    if not case.operation.definition.raw.get("security") or response.status_code == 401:
        return None
    if response.status_code in (400, 422) and _unparsable_body(response):
        return None
    raise AssertionError(f"{case.operation.label} answered {response.status_code} without a token")


def _unparsable_body(response: Response) -> bool:
    try:
        answer = response.json()
    except ValueError:
        return False
    if not isinstance(answer, dict):
        return False
    details = answer.get("details") or []
    return answer.get("error") == "There was an error parsing the body" or any(
        isinstance(d, dict) and d.get("type") == "json_invalid" for d in details
    )


@dataclass(frozen=True)
class Pass:
    """One way of calling every operation: with this token (None: none), in these modes, each with
    these checks, `examples` per operation and mode."""

    name: str
    admin: bool
    examples: int
    checks: dict[GenerationMode, list[Any]]


PASSES = [
    Pass(
        "admin",
        admin=True,
        examples=35,
        checks={
            GenerationMode.POSITIVE: [
                not_a_server_error,
                content_type_conformance,
                response_schema_conformance,
            ],
            # Invalid input must never crash a route. (Schemathesis' `negative_data_rejection` is left
            # out: it counts unknown query parameters, which HTTP APIs ignore by design, and a negated
            # Authorization header, which the admin token replaces, as "invalid data accepted".)
            GenerationMode.NEGATIVE: [not_a_server_error, content_type_conformance],
        },
    ),
    Pass(
        "anonymous",
        admin=False,
        examples=8,
        checks={
            GenerationMode.POSITIVE: [not_a_server_error, refused_without_token],
            GenerationMode.NEGATIVE: [not_a_server_error, refused_without_token],
        },
    ),
]


@pytest.fixture
async def fuzz_target(database_url: str) -> AsyncIterator[Server]:
    """A server of its own (generated traffic lands in random rooms, but it still should not share
    rate-limit budgets or connections with other tests)."""
    settings = make_settings(
        database_url, websocket_requests_per_minute=1_000_000, websocket_requests_per_hour=1_000_000
    )
    async with serve(settings) as running:
        yield running


class Stopped(Exception):
    """The test gave up waiting: the run ends at its next example instead of outliving the server."""


@dataclass
class FuzzRun:
    """One run's progress, shared with the test on the event loop: `ran[-1]` names the operation in
    progress if the run times out, and `stop` ends it there."""

    base_url: str
    admin_token: str = field(repr=False)
    ran: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    current: str = ""  # the request in flight

    def all_passes(self) -> None:
        """Every operation of the schema, in each pass, in both modes where it has an input to break."""
        schema = schemathesis.openapi.from_url(f"{self.base_url}/openapi.json")
        for method, path in EXCLUDED:
            schema = schema.exclude(method=method, path=path)
        operations = [result.ok() for result in schema.get_all_operations()]  # unreadable: fails here
        for one_pass in PASSES:
            for operation in operations:
                modes = list(one_pass.checks) if has_inputs(operation) else [GenerationMode.POSITIVE]
                for mode in modes:
                    label = f"{one_pass.name}: {operation.label} {mode.value}"
                    self.ran.append(label)
                    try:
                        self.one_operation(operation, mode, one_pass)
                    except (AssertionError, FailureGroup) as exc:  # collect it; check the others too
                        self.failures.append(f"{label}: {exc}")
                    except Stopped:
                        return

    def one_operation(
        self, operation: schemathesis.APIOperation, mode: GenerationMode, one_pass: Pass
    ) -> None:
        """Run one operation's examples in `mode`; raises what failed (Failure or FailureGroup)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"} if one_pass.admin else {}
        checks = one_pass.checks[mode]
        cases = operation.as_strategy(generation_mode=mode)

        @settings(
            max_examples=one_pass.examples,
            deadline=EXAMPLE_DEADLINE,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def run(case: schemathesis.Case) -> None:
            if self.stop.is_set():
                raise Stopped
            self.current = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"[:500]
            case.call_and_validate(base_url=self.base_url, headers=headers, checks=checks, timeout=10)

        run()


def has_inputs(operation: schemathesis.APIOperation) -> bool:
    """Negative data needs an input to break; an operation without any gets only the positive run."""
    parameters = (operation.path_parameters, operation.query, operation.headers, operation.cookies)
    return any(len(p) for p in parameters) or bool(list(operation.body))


async def test_openapi_operations_never_fail_and_conform(fuzz_target: Server) -> None:
    fuzz = FuzzRun(fuzz_target.http_url, fuzz_target.token("fuzzer", roles=["admin"]))
    running = asyncio.ensure_future(asyncio.to_thread(fuzz.all_passes))
    done, _ = await asyncio.wait({running}, timeout=RUN_TIMEOUT)
    if not done:
        fuzz.stop.set()
        await asyncio.wait({running}, timeout=15)  # a request in flight ends within its own timeout
        pytest.fail(f"the run took over {RUN_TIMEOUT}s; in flight: {fuzz.current}")
    running.result()
    # The operations this suite owns at least; whatever else the schema lists ran too.
    for label in (
        "GET /api/v1/ws/health",
        "GET /api/v1/ws/stats",
        "GET /api/v1/ws/stats/detailed",
        "GET /metrics",
    ):
        for one_pass in PASSES:
            assert f"{one_pass.name}: {label} positive" in fuzz.ran, fuzz.ran
    assert not any("/ws/shutdown" in label for label in fuzz.ran)
    assert not fuzz.failures, "\n\n".join(fuzz.failures)

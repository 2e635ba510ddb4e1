"""Schemathesis against the running app's own `/openapi.json`: every operation it lists (whoever added
it), with generated valid and invalid requests and an admin token, must never answer 5xx and must
answer as its schema says.

The server runs on this test's event loop, so the synchronous Hypothesis run goes to a thread; it is
bounded by a few examples per operation and per mode, and a deadline per example.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.api.conftest import Server, make_settings, serve

# It stops the server under test; its own tests cover it.
EXCLUDED = [("POST", "/api/v1/ws/shutdown")]
MAX_EXAMPLES = 5  # per operation and mode: enough to reach every parameter, small enough to stay quick
EXAMPLE_DEADLINE = timedelta(seconds=5)  # one request; a hang, not slowness, is what this catches
RUN_TIMEOUT = 120  # seconds; the run takes well under a minute on the 2-core VM

CHECKS = {
    GenerationMode.POSITIVE: [not_a_server_error, content_type_conformance, response_schema_conformance],
    # Invalid input must never crash a route. (Schemathesis' `negative_data_rejection` is left out: it
    # counts unknown query parameters, which HTTP APIs ignore by design, and a negated Authorization
    # header, which the admin token above replaces, as "invalid data accepted".)
    GenerationMode.NEGATIVE: [not_a_server_error, content_type_conformance],
}


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
    token: str
    ran: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    current: str = ""  # the request in flight

    def all_operations(self) -> None:
        """Every operation of the schema, in both modes where it has an input to break."""
        schema = schemathesis.openapi.from_url(f"{self.base_url}/openapi.json")
        for method, path in EXCLUDED:
            schema = schema.exclude(method=method, path=path)
        for result in schema.get_all_operations():
            operation = result.ok()  # a schema schemathesis cannot read fails the test here
            modes = CHECKS if has_inputs(operation) else [GenerationMode.POSITIVE]
            for mode in modes:
                self.ran.append(f"{operation.label} {mode.value}")
                try:
                    self.one_operation(operation, mode)
                except (AssertionError, FailureGroup) as exc:  # collect it; check the others too
                    self.failures.append(f"{operation.label} ({mode.value}): {exc}")
                except Stopped:
                    return

    def one_operation(self, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
        """Run one operation's examples in `mode`; raises what failed (Failure or FailureGroup)."""
        headers = {"Authorization": f"Bearer {self.token}"}

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=EXAMPLE_DEADLINE,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            if self.stop.is_set():
                raise Stopped
            self.current = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"[:500]
            case.call_and_validate(base_url=self.base_url, headers=headers, checks=CHECKS[mode], timeout=10)

        run()


def has_inputs(operation: schemathesis.APIOperation) -> bool:
    """Negative data needs an input to break; an operation without any gets only the positive run."""
    parameters = (operation.path_parameters, operation.query, operation.headers, operation.cookies)
    return any(len(p) for p in parameters) or bool(list(operation.body))


async def test_openapi_operations_never_fail_and_conform(fuzz_target: Server) -> None:
    fuzz = FuzzRun(fuzz_target.http_url, fuzz_target.token("fuzzer", roles=["admin"]))
    running = asyncio.ensure_future(asyncio.to_thread(fuzz.all_operations))
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
        assert f"{label} positive" in fuzz.ran, fuzz.ran
    assert not any("/ws/shutdown" in label for label in fuzz.ran)
    assert not fuzz.failures, "\n\n".join(fuzz.failures)

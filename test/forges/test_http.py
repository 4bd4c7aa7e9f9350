"""ForgeHttp against a small local HTTP server that answers from a script, its pauses on a ManualClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from support import until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.errors import ForgeAccessDeniedError, ForgeError
from keptn_gitops_service.forges.http import MAX_BODY, ForgeHttp

TOKEN = "s3cr3t-token-value"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedForge:
    """Answers each request with the next :class:`Reply` (the last one repeats) and records what it was asked."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/api/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, request.headers.get("Authorization", "")))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedForge]:
    server = ScriptedForge([])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def client(server: ScriptedForge, clock: ManualClock, attempts: int = 6) -> ForgeHttp:
    return ForgeHttp("Gitea", server.url, {"Authorization": f"token {TOKEN}"}, clock, attempts=attempts)


async def settled() -> None:
    """Let every ready task run (the request, the server, the pause) without moving the clock."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_503_is_retried_after_one_second(scripted: ScriptedForge) -> None:
    scripted.replies = [Reply(503, {"message": "maintenance"}), Reply(200, {"number": 7})]
    clock = ManualClock()
    http = client(scripted, clock)
    try:
        call = asyncio.create_task(http.request("GET", "repos/acme/fleet/pulls/7", "read pull request #7"))
        await until(lambda: len(scripted.requests) == 1 and clock.sleepers == 1)
        clock.advance(0.9)
        await settled()
        assert len(scripted.requests) == 1 and not call.done()
        clock.advance(0.1)
        answer = await call
        assert answer.status == 200 and answer.body == {"number": 7}
        assert scripted.requests == [("GET", "/api/v1/repos/acme/fleet/pulls/7", f"token {TOKEN}")] * 2
    finally:
        await http.close()


async def test_a_429_waits_as_long_as_retry_after_says(scripted: ScriptedForge) -> None:
    scripted.replies = [Reply(429, {"message": "slow down"}, {"Retry-After": "7"}), Reply(201, {"ok": True})]
    clock = ManualClock()
    http = client(scripted, clock)
    try:
        call = asyncio.create_task(http.request("POST", "repos/acme/fleet/pulls", "open a pull request", body={}))
        await until(lambda: len(scripted.requests) == 1 and clock.sleepers == 1)
        clock.advance(6.9)
        await settled()
        assert len(scripted.requests) == 1 and not call.done()
        clock.advance(0.1)
        assert (await call).status == 201
        assert len(scripted.requests) == 2
    finally:
        await http.close()


@pytest.mark.parametrize(
    ("status", "headers"),
    [(429, {}), (403, {"X-RateLimit-Remaining": "0"})],
    ids=["429", "403-rate-limit-spent"],
)
async def test_the_rate_limit_reset_is_read_against_the_clocks_wall_time(
    scripted: ScriptedForge, status: int, headers: dict[str, str]
) -> None:
    clock = ManualClock(start=100.0)
    reset = int(clock.now().timestamp()) + 30  # thirty seconds from the clock's "now", not the machine's
    scripted.replies = [
        Reply(status, {"message": "rate limit"}, {**headers, "X-RateLimit-Reset": str(reset)}),
        Reply(200),
    ]
    http = client(scripted, clock)
    try:
        call = asyncio.create_task(http.request("GET", "repos/acme/fleet/pulls", "list the pull requests"))
        await until(lambda: len(scripted.requests) == 1 and clock.sleepers == 1)
        clock.advance(29.5)
        await settled()
        assert len(scripted.requests) == 1 and not call.done()
        clock.advance(0.5)
        answer = await call
        assert answer.status == 200 and answer.body is None
    finally:
        await http.close()


async def test_a_401_fails_at_once_and_the_message_never_holds_the_token(scripted: ScriptedForge) -> None:
    scripted.replies = [Reply(401, {"message": "token is required"})]
    clock = ManualClock()
    http = client(scripted, clock)
    try:
        with pytest.raises(ForgeAccessDeniedError) as caught:
            await http.request("GET", "repos/acme/fleet/pulls/1", "read pull request #1 in acme/fleet")
        assert len(scripted.requests) == 1 and clock.sleepers == 0 and clock.monotonic() == 0.0
        message = str(caught.value)
        assert "read pull request #1 in acme/fleet" in message and "HTTP 401" in message
        assert "token is required" in message and TOKEN not in message
    finally:
        await http.close()


async def test_a_forge_that_keeps_failing_ends_in_an_error_naming_the_call(scripted: ScriptedForge) -> None:
    scripted.replies = [Reply(502, {"message": "bad gateway"})]
    clock = ManualClock()
    http = client(scripted, clock, attempts=3)
    try:
        call = asyncio.create_task(
            http.request("GET", "repos/acme/fleet/pulls/1", "read pull request #1 in acme/fleet")
        )
        for failed, pause in ((1, 1.0), (2, 2.0)):  # 1 s, then 2 s; the third failure is the last attempt
            await until(lambda: len(scripted.requests) == failed and clock.sleepers == 1)  # noqa: B023
            clock.advance(pause)
        with pytest.raises(ForgeError) as caught:
            await call
        assert not isinstance(caught.value, ForgeAccessDeniedError)
        assert len(scripted.requests) == 3
        assert str(caught.value) == (
            "Gitea: could not read pull request #1 in acme/fleet: HTTP 502 (bad gateway) (after 3 attempts)"
        )
        assert TOKEN not in str(caught.value)
    finally:
        await http.close()


async def test_a_large_answer_is_read_whole_and_one_over_the_bound_refused(scripted: ScriptedForge) -> None:
    pulls = [{"number": n, "title": f"Deploy version {n} of podtato-head to production"} for n in range(20_000)]
    scripted.replies = [Reply(200, pulls), Reply(200, "x" * (MAX_BODY + 1))]
    http = client(scripted, ManualClock())
    try:
        answer = await http.request("GET", "repos/acme/fleet/pulls", "list the pull requests")
        assert answer.body == pulls  # about 1.3 MB: it arrives in many pieces
        with pytest.raises(ForgeError, match=f"with more than {MAX_BODY} bytes"):
            await http.request("GET", "repos/acme/fleet/pulls", "list the pull requests")
        assert len(scripted.requests) == 2  # a bound exceeded is not retried
    finally:
        await http.close()

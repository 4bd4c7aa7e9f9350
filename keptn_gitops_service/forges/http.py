"""The one HTTP client every forge adapter uses: JSON in and out, the token in a header, transient failures retried.

Retried: connection errors and timeouts, 5xx, 429, and a 403 that says the rate limit is spent (GitHub's
``X-RateLimit-Remaining: 0``). The pause honours ``Retry-After`` (seconds), else the forge's reset header (epoch
seconds: GitHub/Gitea ``X-RateLimit-Reset``, GitLab ``RateLimit-Reset``), else grows 1, 2, 4 … s; each pause is
capped at :attr:`ForgeHttp.max_pause`. A forge that keeps failing ends in :class:`~errors.ForgeError` naming the
call; a wait that polls the forge asks again later, so a forge outage never fails a deployment by itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import ForgeAccessDeniedError, ForgeError

log = structlog.get_logger(__name__)

_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_RESET_HEADERS = ("X-RateLimit-Reset", "RateLimit-Reset")
MAX_BODY = 4 * 1024 * 1024
"""The largest answer read from a forge (a pull request list of a busy repository stays far below)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any
    """The decoded JSON, or ``None`` for an empty body."""


@dataclass
class ForgeHttp:
    """Requests to one forge's API at ``base_url`` with ``auth_headers`` (the token; never logged)."""

    forge: str
    """``Gitea``, ``GitHub``, ``GitLab``: for messages."""
    base_url: str
    auth_headers: Mapping[str, str]
    clock: Clock
    attempts: int = 6
    timeout: float = 30.0
    max_pause: float = 120.0
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> Answer:
        """``method`` ``path`` (below :attr:`base_url`); ``what`` names the call in errors ("open a pull request
        in acme/fleet"). 2xx and the statuses in ``accept`` are answers; others raise."""
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "keptn-gitops-service", **self.auth_headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await self._once(method, url, headers, data, params)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                pause = self._backoff(attempt)
            else:
                if 200 <= answer.status < 300 or answer.status in accept:
                    return answer
                if not _transient(answer):
                    raise _refused(self.forge, what, answer)
                problem = f"HTTP {answer.status}{_message(answer)}"
                pause = self._pause(answer, attempt)
            if attempt == self.attempts:
                break
            log.info("forge call failed, retrying", forge=self.forge, call=what, problem=problem, pause=pause)
            await self.clock.sleep(pause)
        raise ForgeError(f"{self.forge}: could not {what}: {problem} (after {self.attempts} attempts)")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _once(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None, params: Mapping[str, str] | None
    ) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.request(method, url, headers=headers, data=data, params=params) as response:
            raw = bytearray()
            while len(raw) <= MAX_BODY:  # read() answers what has arrived so far, not the whole body
                chunk = await response.content.read(MAX_BODY + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
            if len(raw) > MAX_BODY:
                raise ForgeError(f"{self.forge} answered {method} {response.url.path} with more than {MAX_BODY} bytes")
            try:
                decoded = json.loads(raw) if raw.strip() else None
            except ValueError:
                decoded = bytes(raw[:200]).decode("utf-8", "replace")
            return Answer(response.status, dict(response.headers), decoded)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_pause, 2 ** (attempt - 1)))

    def _pause(self, answer: Answer, attempt: int) -> float:
        retry_after = answer.headers.get("Retry-After", "")
        if retry_after.strip().isdigit():
            return min(self.max_pause, float(retry_after))
        for name in _RESET_HEADERS:
            value = answer.headers.get(name, "")
            if value.strip().isdigit():
                return min(self.max_pause, max(1.0, float(value) - self.clock.now().timestamp()))
        return self._backoff(attempt)


def _transient(answer: Answer) -> bool:
    if answer.status in _TRANSIENT:
        return True
    return answer.status == 403 and answer.headers.get("X-RateLimit-Remaining", "") == "0"


def _refused(forge: str, what: str, answer: Answer) -> ForgeError:
    text = f"{forge}: could not {what}: HTTP {answer.status}{_message(answer)}"
    if answer.status in (401, 403):
        return ForgeAccessDeniedError(text + " (check the token and its permissions)")
    return ForgeError(text)


def _message(answer: Answer) -> str:
    """The forge's own explanation, when it gives one (``message``, GitLab's ``error``), shortened."""
    body = answer.body
    text = ""
    if isinstance(body, dict):
        found = body.get("message") or body.get("error") or ""
        text = found if isinstance(found, str) else json.dumps(found)
    elif isinstance(body, str):
        text = body
    text = " ".join(text.split())
    return f" ({text[:300]})" if text else ""

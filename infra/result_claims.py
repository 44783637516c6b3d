"""Result claims: at most one published result per (request_id, phase), without losing one to a crash.

A single `SET NX` taken before publishing loses the result when the process dies between the claim and the send:
the redelivered message finds the claim and skips. So a claim has two steps:

1. `begin` stores `pending:<token>:<lease until, ms>:<marker>` (atomically, in a script using Redis' clock).
   Whoever holds it publishes. `marker` is where the result will land (`partition@end offset` of `results`).
2. `confirm`, after the broker acked the result, turns it into `published` for `ttl_s`.

A redelivery that finds a live `pending` waits for it: either its holder confirms (skip) or its lease runs out
because the holder died. The one taking over then gets the old value, and with it the marker: `publish_once` reads
`results` from that offset (`ResultLog`) and publishes only if the dead holder's result is not there. So a crash
between the broker's ack and `confirm` repeats nothing either. Without a `ResultLog` (unit tests) a takeover
publishes again; the result is the same record for the same key.

`phase` keeps the API general: a request may have one `clarification` result and one `final` result, each claimed
under its own key (`final` covers both `completed` and `failed`, so a watchdog's `failed` and the publisher's
`completed` exclude each other).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional, Protocol

log = logging.getLogger("gapstream.claims")
_PART = re.compile(r"^[\x21-\x7e]{1,256}$")
PUBLISHED = "published"


def phase_of(status: str) -> str:
    """The claim phase of a result status: one `clarification` and one `final` (completed or failed) per request."""
    return "clarification" if status == "needs_clarification" else "final"


class ClaimBusy(RuntimeError):
    """Another worker holds the claim and neither confirmed nor let its lease lapse in time; try again later."""

    retriable = True


@dataclass(frozen=True)
class Claim:
    key: str
    token: str
    previous_marker: Optional[str] = None  # set when this claim took over a lapsed one: where to look for its result


class ResultLog(Protocol):
    """Where results land, so a takeover can check whether the lapsed holder did publish (streams.result_log)."""

    async def marker(self, request_id: str) -> str: ...

    async def published_since(self, request_id: str, phase: str, marker: str) -> bool: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# KEYS[1] claim, KEYS[2] the single SET NX marker of earlier versions (published there counts).
# ARGV: token, lease ms, ttl s, marker. → {state, previous value}.
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if v == 'published' or redis.call('EXISTS', KEYS[2]) == 1 then return {'published', ''} end
if v then
  local until_ms = tonumber(string.match(v, '^pending:[^:]*:(%d+):'))
  if until_ms and until_ms > now then return {'busy', v} end
end
redis.call('SET', KEYS[1], 'pending:' .. ARGV[1] .. ':' .. (now + tonumber(ARGV[2])) .. ':' .. ARGV[4], 'EX', ARGV[3])
if v then return {'takeover', v} end
return {'new', ''}
"""


def _marker_of(value: str) -> str:
    parts = value.split(":", 3)
    return parts[3] if len(parts) == 4 else ""


class ResultClaims:
    def __init__(self, client: Any, *, prefix: str = "gapstream:", lease_s: float = 10.0,
                 ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self._begin = client.register_script(_BEGIN)

    def key(self, request_id: str, phase: str = "final") -> str:
        for part in (request_id, phase):
            if not isinstance(part, str) or not _PART.fullmatch(part):
                raise ValueError(f"invalid claim key part {part!r}")
        return f"{self.prefix}claim:{phase}:{request_id}"

    def _legacy_key(self, request_id: str, phase: str) -> str:
        # Before two-step claims the publisher took `{prefix}done:result:<id>` (RedisDedupe.claim): after an upgrade
        # those results are out, and neither a redelivery nor the watchdog reading old requests may add another.
        return f"{self.prefix}done:result:{request_id}" if phase == "final" else self.key(request_id, phase)

    async def begin(self, request_id: str, phase: str = "final", wait_s: Optional[float] = None,
                    marker: str = "") -> Optional[Claim]:
        """A claim to publish, or None when this phase's result is out already.

        Waits up to `wait_s` (default: the lease plus a margin) for a pending holder to confirm or lapse; raises
        `ClaimBusy` (retriable) after that. Redis errors propagate: they are retriable too.
        """
        key = self.key(request_id, phase)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + (self.lease_s + 2.0 if wait_s is None else wait_s)
        delay = 0.05
        while True:
            state, previous = (_text(x) for x in await self._begin(
                keys=[key, self._legacy_key(request_id, phase)],
                args=[token, int(self.lease_s * 1000), self.ttl_s, marker]))
            if state == "new":
                return Claim(key, token)
            if state == "takeover":
                log.warning("result claim %s lapsed; taking it over", key)
                return Claim(key, token, _marker_of(previous))
            if state == PUBLISHED:
                return None
            if time.monotonic() >= deadline:
                raise ClaimBusy(f"result {phase} of {request_id} is being published by another worker")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def confirm(self, claim: Claim) -> None:
        await self.redis.set(claim.key, PUBLISHED, ex=self.ttl_s)

    async def abandon(self, claim: Claim) -> None:
        """The send failed: let a retry claim at once instead of waiting out the lease (only if still ours)."""
        value = await self.redis.get(claim.key)
        if value is not None and _text(value).startswith(f"pending:{claim.token}:"):
            await self.redis.delete(claim.key)

    async def is_published(self, request_id: str, phase: str = "final") -> bool:
        value = await self.redis.get(self.key(request_id, phase))
        if value is not None and _text(value) == PUBLISHED:
            return True
        return phase == "final" and bool(await self.redis.exists(self._legacy_key(request_id, phase)))

    async def state(self, request_id: str, phase: str = "final") -> Optional[str]:
        """`published`, `pending` or None (nobody has claimed it)."""
        value = await self.redis.get(self.key(request_id, phase))
        return None if value is None else _text(value).split(":", 1)[0]


async def publish_once(claims: ResultClaims, request_id: str, send: Any, phase: str = "final",
                       wait_s: Optional[float] = None, results: Optional[ResultLog] = None) -> bool:
    """Claim, `await send()`, confirm: True when this call published. The one way results reach `results`."""
    marker = await results.marker(request_id) if results is not None else ""
    claim = await claims.begin(request_id, phase, wait_s, marker)
    if claim is None:
        return False
    if claim.previous_marker and results is not None:
        if await results.published_since(request_id, phase, claim.previous_marker):
            log.warning("result %s of %s was out before its publisher died; not repeating it", phase, request_id)
            await claims.confirm(claim)
            return False
    try:
        await send()
    except BaseException:
        try:
            await claims.abandon(claim)
        except Exception:
            pass  # the lease lapses by itself
        raise
    # The result is out: failing here must not make the caller retry (that would publish it again), so the
    # confirm is retried for about one lease and then left to lapse.
    deadline = time.monotonic() + claims.lease_s
    delay = 0.1
    while True:
        try:
            await claims.confirm(claim)
            return True
        except Exception as exc:
            if time.monotonic() >= deadline:
                log.warning("could not confirm result claim %s (%s); a crash now could repeat it",
                            claim.key, type(exc).__name__)
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

"""Result claims: at most one published result per (request_id, phase), without losing one to a crash.

A single `SET NX` taken before publishing loses the result when the process dies between the claim and the send:
the redelivered message finds the claim and skips. So a claim has two steps:

1. `begin` takes `pending:<token>` with a short lease (SET NX PX). Whoever holds it publishes.
2. `confirm`, after the broker acked the result, turns it into `published` for `ttl_s`.

A redelivery that finds a live `pending` waits for it: either its holder confirms (skip) or the lease runs out
because the holder died (take over and publish). The remaining window is a crash after the broker's ack and before
`confirm` (one Redis round trip); the redo then publishes a second, identical result (same content, same key).

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
from typing import Any, Optional

log = logging.getLogger("gapstream.claims")
_PART = re.compile(r"^[\x21-\x7e]{1,256}$")
PUBLISHED = "published"


class ClaimBusy(RuntimeError):
    """Another worker holds the claim and neither confirmed nor let its lease lapse in time; try again later."""

    retriable = True


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ResultClaims:
    def __init__(self, client: Any, *, prefix: str = "gapstream:", lease_s: float = 10.0,
                 ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.lease_s = lease_s
        self.ttl_s = ttl_s

    def key(self, request_id: str, phase: str = "final") -> str:
        for part in (request_id, phase):
            if not isinstance(part, str) or not _PART.fullmatch(part):
                raise ValueError(f"invalid claim key part {part!r}")
        return f"{self.prefix}claim:{phase}:{request_id}"

    async def begin(self, request_id: str, phase: str = "final", wait_s: Optional[float] = None) -> Optional[Claim]:
        """A claim to publish, or None when this phase's result is out already.

        Waits up to `wait_s` (default: the lease plus a margin) for a pending holder to confirm or lapse; raises
        `ClaimBusy` (retriable) after that. Redis errors propagate: they are retriable too.
        """
        key = self.key(request_id, phase)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + (self.lease_s + 2.0 if wait_s is None else wait_s)
        delay = 0.05
        while True:
            if await self.redis.set(key, f"pending:{token}", px=int(self.lease_s * 1000), nx=True):
                return Claim(key, token)
            state = await self.redis.get(key)
            if state is not None and _text(state) == PUBLISHED:
                return None
            if state is not None and time.monotonic() >= deadline:
                raise ClaimBusy(f"result {phase} of {request_id} is being published by another worker")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def confirm(self, claim: Claim) -> None:
        await self.redis.set(claim.key, PUBLISHED, ex=self.ttl_s)

    async def abandon(self, claim: Claim) -> None:
        """The send failed: let a retry claim at once instead of waiting out the lease (only if still ours)."""
        value = await self.redis.get(claim.key)
        if value is not None and _text(value) == f"pending:{claim.token}":
            await self.redis.delete(claim.key)

    async def is_published(self, request_id: str, phase: str = "final") -> bool:
        value = await self.redis.get(self.key(request_id, phase))
        return value is not None and _text(value) == PUBLISHED

    async def state(self, request_id: str, phase: str = "final") -> Optional[str]:
        """`published`, `pending` or None (nobody has claimed it)."""
        value = await self.redis.get(self.key(request_id, phase))
        return None if value is None else _text(value).split(":", 1)[0]


async def publish_once(claims: ResultClaims, request_id: str, send: Any, phase: str = "final",
                       wait_s: Optional[float] = None) -> bool:
    """Claim, `await send()`, confirm: True when this call published. The one way results reach `results`."""
    claim = await claims.begin(request_id, phase, wait_s)
    if claim is None:
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

"""Who is asking: the access token, user scoping, and the checks every request passes before a page runs.

- No token configured (loopback only, which `gapstream ui` enforces): anyone who can reach the port may use every
  page, as anyone on the machine may run `gapstream memory show`. The Host header must still be a loopback name,
  so a web page elsewhere cannot reach the UI through DNS rebinding.
- A token configured (`--token` / GAPSTREAM_UI_TOKEN): it is the operator's, and every page and API call needs it
  or a *user token*. A user token, `u.<user>.<mac>` with an HMAC of the user id under the operator token, opens
  only that user's pages (submit, results, history, memory); nothing else, and no dead letters. The operator hands
  it out (`gapstream ui --user-token USER`); there is no list of users to keep.

A token comes as `Authorization: Bearer …`, the `gs_token` cookie, or once in the URL (`?token=…`), which sets the
cookie (HttpOnly, SameSite=Strict) and redirects to the same address without it. A form post whose Origin is
another site is refused, so another page cannot submit, forget or replay in the user's name.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlparse

COOKIE = "gs_token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def user_token(operator_token: str, user_id: str) -> str:
    mac = hmac.new(operator_token.encode(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"u.{user_id}.{mac}"


@dataclass(frozen=True)
class Principal:
    kind: str  # "open" (no token configured), "operator" or "user"
    user_id: Optional[str] = None

    @property
    def operator(self) -> bool:
        return self.kind in ("open", "operator")

    def may_see(self, user_id: str) -> bool:
        return self.operator or user_id == self.user_id


def principal_for(token: Optional[str], operator_token: Optional[str]) -> Optional[Principal]:
    """The principal a presented token stands for, or None when it stands for nobody."""
    if operator_token is None:
        return Principal("open")
    if not token:
        return None
    if hmac.compare_digest(token.encode(), operator_token.encode()):
        return Principal("operator")
    if token.startswith("u.") and token.count(".") >= 2:
        user_id = token[2:token.rindex(".")]
        if hmac.compare_digest(token.encode(), user_token(operator_token, user_id).encode()):
            return Principal("user", user_id)
    return None


def _hostname(host: str) -> str:
    return (urlparse(f"//{host}").hostname or "").lower()


class AuthMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware), so the live event stream passes through unbuffered."""

    def __init__(self, app: Any, token: Optional[str], extra_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.token = token or None
        self.loopback_names = LOOPBACK_NAMES | {h.lower() for h in extra_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if scope["path"] == "/healthz":  # liveness for compose and tests; says nothing but "ok"
            await self.app(scope, receive, send)
            return
        if self.token is None and _hostname(host) not in self.loopback_names:
            await _plain(send, 403, "this page answers only on a loopback address without a token")
            return
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin and origin != "null" and urlparse(origin).netloc != host:
            await _plain(send, 403, "a form from another site may not post here")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        presented = _bearer(headers) or _cookie(headers) or query.get("token")
        principal = principal_for(presented, self.token)
        if principal is None:
            await _plain(send, 401, "this page needs its access token: open it with ?token=... "
                                    "(ask the operator of gapstream ui)")
            return
        if self.token is not None and "token" in query and scope["method"] in SAFE_METHODS:
            # Into the cookie, out of the address bar (and so out of history, logs and Referer headers).
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={query['token']}; Path=/; HttpOnly; SameSite=Strict"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _bearer(headers: dict[str, str]) -> Optional[str]:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _cookie(headers: dict[str, str]) -> Optional[str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no token, not a crash
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


async def _plain(send: Any, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})

"""Reads a result page as plain text, for the facts a search snippet does not hold (`agents.ports.PageReader`).

Bounded: at most `max_bytes` of the body are read (the rest is dropped, not an error), the whole fetch (redirects
included, at most `max_redirects`) must finish within `timeout_s`, and only HTML, XHTML and plain text are read.
HTML becomes text with BeautifulSoup (`beautifulsoup4`, stdlib `html.parser`): scripts, styles, navigation,
headers, footers and forms are dropped. Only http(s) URLs are fetched, and by default no host that resolves to a
loopback, private, link-local or otherwise non-public address (so a search result cannot point the reader at an
internal service); tests reading from a local server pass `allow_private_hosts=True`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from agents.ports import SearchError

READABLE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
MAX_TEXT_CHARS = 200_000
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "nav", "header", "footer", "form", "aside",
              "button", "select", "head")


def _public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


class _PublicOnlyResolver(AbstractResolver):
    """DNS answers with the non-public addresses removed: a name that only resolves to those cannot be fetched."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        answers = [a for a in await self._inner.resolve(host, port, family) if _public(a["host"])]
        if not answers:
            raise OSError(f"{host} does not resolve to a public address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def html_to_text(markup: str) -> str:
    """Readable text of an HTML document, one block per line."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(list(_DROP_TAGS)):
        tag.decompose()
    body = soup.body or soup
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in body.get_text("\n").splitlines()]
    text = "\n".join(line for line in lines if line)
    if title and not text.startswith(title):
        text = f"{title}\n{text}"
    return text[:MAX_TEXT_CHARS]


class HttpPageReader:
    """`PageReader` over aiohttp."""

    def __init__(
        self,
        *,
        max_bytes: int = 512 * 1024,
        timeout_s: float = 5.0,
        max_redirects: int = 3,
        allow_private_hosts: bool = False,
        user_agent: str = "gapstream-page-reader/0.1",
    ) -> None:
        if max_bytes < 1 or timeout_s <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout_s must be positive, max_redirects >= 0")
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.allow_private_hosts = allow_private_hosts
        self.user_agent = user_agent

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SearchError(f"not an http(s) URL: {url[:200]!r}", retriable=False, kind="bad_request")
        if not self.allow_private_hosts:
            host = parts.hostname
            if host == "localhost" or host.endswith(".localhost"):
                raise SearchError(f"refusing a non-public host: {host}", retriable=False, kind="bad_request")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                return  # a name: the resolver drops its non-public addresses
            if not _public(host):
                raise SearchError(f"refusing a non-public host: {host}", retriable=False, kind="bad_request")

    async def read(self, url: str) -> str:
        self._check_url(url)
        resolver = None if self.allow_private_hosts else _PublicOnlyResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, limit=4)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             headers={"User-Agent": self.user_agent}) as session:
                async with session.get(url, max_redirects=self.max_redirects, allow_redirects=True) as response:
                    if response.status >= 400:
                        raise SearchError(f"HTTP {response.status} reading {url[:200]}",
                                          retriable=response.status == 429 or response.status >= 500,
                                          kind="server_error" if response.status >= 500 else "bad_request")
                    kind = (response.content_type or "").lower()
                    if kind not in READABLE_TYPES:
                        raise SearchError(f"not an HTML or text page ({kind or 'no content type'}): {url[:200]}",
                                          retriable=False, kind="invalid_response")
                    body = await self._read_capped(response)
                    charset = response.charset or "utf-8"
        except SearchError:
            raise
        except asyncio.TimeoutError:
            raise SearchError(f"no page within {self.timeout_s:.1f} s: {url[:200]}", retriable=True,
                              kind="timeout") from None
        except (aiohttp.TooManyRedirects, aiohttp.InvalidURL) as exc:
            raise SearchError(f"{type(exc).__name__} reading {url[:200]}", retriable=False, kind="bad_request") \
                from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SearchError(f"cannot read {url[:200]}: {type(exc).__name__}: {exc}"[:400], retriable=True,
                              kind="unreachable") from None
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        if kind == "text/plain":
            return text[:MAX_TEXT_CHARS]
        return await asyncio.to_thread(html_to_text, text)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            chunks.append(chunk[: self.max_bytes - size])
            size += len(chunks[-1])
            if size >= self.max_bytes:
                break  # the rest of the body is not read; closing the response drops the connection
        return b"".join(chunks)


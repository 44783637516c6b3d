"""Web search through SerpAPI, on the official `serpapi` client (the new one; `google-search-results` owns the same
import name and must not be installed beside it).

- The client is synchronous (requests); calls run on a small thread pool of this backend's own, so a burst of
  queries does not queue behind the event loop's default executor.
- `base_url` (`GAPSTREAM_SERPAPI_URL`) points this instance's clients at another host — a proxy or a test server —
  by setting `BASE_DOMAIN` on the client instance; the class attribute, and so every other client, is untouched.
- Answer box, knowledge graph, top stories, news and organic results become one kind of `Hit`
  (`source` = URL, `text` = snippet, `date` = ISO date when the result has one, `backend="serpapi"`).
- Failures become `agents.ports.SearchError` with `retriable`: timeouts, connection errors, 429 and 5xx are
  retried (bounded, exponential backoff, `Retry-After` honoured up to the cap) within `timeout_s` in all; 401/403,
  other 4xx, an error body and malformed JSON are not.
- SerpAPI takes the key in the query string, so it would show up in request URLs: it is scrubbed from every error
  message, and from urllib3's debug log lines, and never put in a hit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional

import requests
import serpapi
from serpapi.exceptions import HTTPConnectionError, HTTPError
from serpapi.exceptions import TimeoutError as SerpTimeoutError

from agents.ports import SearchError
from schemas.records import Hit

log = logging.getLogger(__name__)

_KEY_PARAM = re.compile(r"(api_key=)[^&\s'\"#]+", re.I)
_NO_RESULTS = re.compile(r"hasn'?t returned any results|no results", re.I)
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_RELATIVE = re.compile(r"^(\d+|an?|one)\s+(second|minute|min|hour|day|week|month|year)s?\s+ago$", re.I)
_MDY = re.compile(r"^([A-Za-z]{3,9})\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)$")
_DMY = re.compile(r"^(\d{1,2})\s+([A-Za-z]{3,9})\.?,?\s+((?:19|20)\d\d)$")
_MY = re.compile(r"^([A-Za-z]{3,9})\.?,?\s+((?:19|20)\d\d)$")
_ISO = re.compile(r"^((?:19|20)\d\d)-(\d\d)(?:-(\d\d))?")
_KG_SKIP = {"title", "type", "description", "source", "kgmid", "knowledge_graph_search_link", "thumbnail", "image",
            "header_images", "serpapi_knowledge_graph_search_link", "entity_type", "website"}


def scrub(text: str, secret: Optional[str]) -> str:
    """`text` without the API key: as a query parameter or anywhere verbatim."""
    text = _KEY_PARAM.sub(r"\1***", str(text))
    if secret:
        text = text.replace(secret, "***")
    return text


class _ScrubKeyFilter(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string (and so `api_key=…`) included: redact it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return True
        if "api_key=" in message.lower():
            record.msg, record.args = scrub(message, None), ()
        return True


_FILTER = _ScrubKeyFilter()
for _name in ("urllib3.connectionpool", "requests"):
    if _FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_FILTER)


def normalize_date(raw: Any, today: date) -> Optional[str]:
    """A result date as ISO (`2026-03-04`, or `2026-03` for a month): absolute, relative ("3 days ago",
    "yesterday") or ISO-prefixed; anything unparseable comes back as short plain text, or None."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = re.sub(r"\s+", " ", raw.strip())
    low = text.lower()
    if low in ("today", "just now"):
        return today.isoformat()
    if low == "yesterday":
        return (today - timedelta(days=1)).isoformat()
    match = _RELATIVE.match(text)
    if match:
        count = 1 if match.group(1).lower() in ("a", "an", "one") else int(match.group(1))
        unit = match.group(2).lower()
        days = {"second": 0, "minute": 0, "min": 0, "hour": 0, "day": 1, "week": 7, "month": 30, "year": 365}[unit]
        return (today - timedelta(days=days * count)).isoformat()
    try:
        match = _ISO.match(text)
        if match:
            day = int(match.group(3)) if match.group(3) else None
            return date(int(match.group(1)), int(match.group(2)), day or 1).isoformat()[: 10 if day else 7]
        match = _MDY.match(text)
        if match and match.group(1)[:3].lower() in _MONTHS:
            return date(int(match.group(3)), _MONTHS[match.group(1)[:3].lower()], int(match.group(2))).isoformat()
        match = _DMY.match(text)
        if match and match.group(2)[:3].lower() in _MONTHS:
            return date(int(match.group(3)), _MONTHS[match.group(2)[:3].lower()], int(match.group(1))).isoformat()
        match = _MY.match(text)
        if match and match.group(1)[:3].lower() in _MONTHS:
            return f"{int(match.group(2)):04d}-{_MONTHS[match.group(1)[:3].lower()]:02d}"
    except ValueError:
        pass
    return text[:40]


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def normalize_results(data: Mapping[str, Any], today: date, limit: int = 10) -> list[Hit]:
    """SerpAPI's JSON as hits, best first: answer box, knowledge graph, then top stories / news and organic results
    by rank. `score` is a rank score in (0, 1] — comparable within one result page only."""
    hits: list[tuple[float, int, Hit]] = []

    def add(score: float, source: str, title: str, text: str, raw_date: Any = None) -> None:
        if text.strip():
            hits.append((score, len(hits), Hit(source=source, title=title, text=text, score=round(score, 4),
                                               backend="serpapi", date=normalize_date(raw_date, today))))

    box = data.get("answer_box")
    for item in box if isinstance(box, list) else [box] if isinstance(box, dict) else []:
        parts = [_str(item.get(k)) for k in ("answer", "result", "snippet")]
        listed = item.get("list")
        if isinstance(listed, list):
            parts.append("; ".join(_str(x) for x in listed if _str(x)))
        text = ". ".join(p.rstrip(".") for p in parts if p)
        add(1.0, _str(item.get("link")) or "serpapi:answer_box", _str(item.get("title")), text, item.get("date"))

    graph = data.get("knowledge_graph")
    if isinstance(graph, dict):
        parts = [_str(graph.get("description"))]
        for key, value in graph.items():
            if key not in _KG_SKIP and not key.endswith(("_link", "_links", "_stick")) and _str(value):
                parts.append(f"{key.replace('_', ' ').capitalize()}: {_str(value)}")
        source = graph.get("source") if isinstance(graph.get("source"), dict) else {}
        title = " ".join(p for p in (_str(graph.get("title")), f"({_str(graph.get('type'))})"
                                     if _str(graph.get("type")) else "") if p)
        text = ". ".join(p.rstrip(".") for p in parts[:9] if p)
        add(0.98, _str(source.get("link")) or _str(graph.get("website")) or "serpapi:knowledge_graph", title, text)

    for key, base in (("top_stories", 0.88), ("news_results", 0.87)):
        stories = data.get(key)
        if isinstance(stories, dict):  # some layouts group stories by heading
            stories = [s for group in stories.values() if isinstance(group, list) for s in group]
        for index, story in enumerate(stories if isinstance(stories, list) else []):
            if not isinstance(story, dict):
                continue
            outlet = story.get("source")
            outlet = _str(outlet.get("name")) if isinstance(outlet, dict) else _str(outlet)
            title = _str(story.get("title"))
            text = _str(story.get("snippet")) or title
            add(base - 0.05 * index, _str(story.get("link")), f"{title} ({outlet})" if outlet else title, text,
                story.get("date"))

    for index, result in enumerate(data.get("organic_results") or []):
        if not isinstance(result, dict) or not _str(result.get("link")):
            continue
        position = result.get("position") if isinstance(result.get("position"), int) else index + 1
        add(max(0.05, 0.9 - 0.05 * (position - 1)), _str(result.get("link")), _str(result.get("title")),
            _str(result.get("snippet")), result.get("date"))

    hits.sort(key=lambda entry: (-entry[0], entry[1]))
    seen: set[tuple[str, str]] = set()
    out = []
    for _, _, hit in hits:
        if (hit.source, hit.text) in seen:
            continue
        seen.add((hit.source, hit.text))
        out.append(hit)
    return out[:limit]


class SerpApiSearch:
    """`SearchBackend` over SerpAPI's Google engine (or any engine whose JSON has the same sections)."""

    name = "serpapi"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: Optional[str] = None,
        timeout_s: float = 15.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 4.0,
        engine: str = "google",
        params: Optional[Mapping[str, str]] = None,
        max_workers: int = 16,
        today: Optional[Callable[[], date]] = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("a SerpAPI key is required (SERPAPI_API_KEY)")
        if base_url is not None and not re.match(r"^https?://[^\s/]+", base_url):
            raise ValueError(f"GAPSTREAM_SERPAPI_URL must be an http(s) URL, got {base_url!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_workers < 1:
            raise ValueError("timeout_s and max_workers must be positive, retries and backoff_s not negative")
        self._api_key = api_key.strip()
        self.base_url = (base_url or serpapi.HTTPClient.BASE_DOMAIN).rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.engine = engine
        self.params = dict(params or {})
        self.today = today or (lambda: datetime.now(timezone.utc).date())
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="serpapi")
        self._local = threading.local()
        self.attempts = 0  # upstream HTTP requests made, retries included

    def __repr__(self) -> str:
        return f"SerpApiSearch(base_url={self.base_url!r}, engine={self.engine!r})"

    def _client(self) -> serpapi.Client:
        """One client (and requests session) per pool thread: sessions are not shared across threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = serpapi.Client(api_key=self._api_key)
            client.BASE_DOMAIN = self.base_url  # instance attribute: the class default stays as it is
            self._local.client = client
        return client

    def _fetch(self, query: str, timeout: float) -> Any:
        """One request, run on the pool; SerpAPI errors become `SearchError` (key scrubbed)."""
        params = {**self.params, "engine": self.engine, "q": query}
        started = time.perf_counter()
        try:
            return self._client().search(params, timeout=timeout)
        except HTTPConnectionError as exc:
            if isinstance(exc.__context__, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
                raise self._error("timeout", True, f"no answer within {timeout:.1f} s") from None
            raise self._error("unreachable", True, f"cannot connect: {type(exc.__context__ or exc).__name__}") \
                from None
        except SerpTimeoutError:
            raise self._error("timeout", True, f"no answer within {time.perf_counter() - started:.1f} s") from None
        except HTTPError as exc:
            status = getattr(exc, "status_code", -1)
            detail = getattr(exc, "error", None) or f"HTTP {status}"
            if status in (401, 403):
                kind, retriable = "unauthorized", False
            elif status == 429:
                kind, retriable = "rate_limited", True
            elif status >= 500:
                kind, retriable = "server_error", True
            else:
                kind, retriable = "bad_request", False
            error = self._error(kind, retriable, f"HTTP {status}: {detail}")
            response = getattr(exc, "response", None)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            error.retry_after = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise error from None
        except requests.exceptions.RequestException as exc:
            raise self._error("unreachable", True, f"request failed: {type(exc).__name__}") from None

    def _error(self, kind: str, retriable: bool, message: str) -> SearchError:
        return SearchError(f"serpapi {kind.replace('_', ' ')}: {scrub(message, self._api_key)}"[:500],
                           retriable=retriable, kind=kind)

    def _parse(self, results: Any, limit: int) -> list[Hit]:
        data = getattr(results, "data", results)
        if not isinstance(data, dict):
            raise self._error("invalid_response", False, "the answer is not a JSON object")
        error = data.get("error")
        if isinstance(error, str) and error:
            if _NO_RESULTS.search(error):
                return []
            raise self._error("bad_request", False, error)
        status = (data.get("search_metadata") or {}).get("status") if isinstance(data.get("search_metadata"),
                                                                                   dict) else None
        if status and str(status).lower() not in ("success", "cached"):
            raise self._error("server_error", True, f"search status {status}")
        return normalize_results(data, self.today(), limit)

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search query is empty")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise self._error("timeout", True, f"no answer within {self.timeout_s:.1f} s")
                self.attempts += 1
                results = await loop.run_in_executor(self._executor, self._fetch, query.strip(), remaining)
                return self._parse(results, limit)
            except SearchError as exc:
                exc.attempts = attempt
                exc.__context__ = exc.__cause__ = None  # the client's exception holds the URL, key included
                wait = getattr(exc, "retry_after", None)
                wait = min(self.max_backoff_s, wait if wait is not None else self.backoff_s * 2 ** (attempt - 1))
                if not exc.retriable or attempt > self.retries or deadline - time.monotonic() <= wait + 0.05:
                    if attempt > 1:
                        exc.args = (f"{exc.args[0]} (after {attempt} attempts)",)
                    log.info("serpapi search failed: %s", exc)
                    raise
                log.info("serpapi search failed (attempt %d, retrying in %.2f s): %s", attempt, wait, exc)
                await asyncio.sleep(wait)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

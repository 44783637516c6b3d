"""The offline search backend: BM25 (bm25s) over a folder of .md, .txt and .json files, plus meaning.

With an embedder (`infra/embeddings.py`), ranking is hybrid: each passage's embedding is computed once when the index
is built, the query's once per search, and a passage's score is half its BM25 score (scaled by the best) and half
its cosine similarity; a passage that shares no word with the query but means it ("the flower people give on
Mother's Day" / "carnations are given to mothers") is a hit when its similarity reaches `SEMANTIC_HIT`.

Documents are cut into passages (a paragraph, or a few sentences of a long one) so a hit is one focused piece of
text rather than a whole file, and a fact drawn from it stays short. The heading a passage sits under is indexed
with it, because headings name what the passage is about ("# Lantern Fair 2026") more often than the body does.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import bm25s
import numpy as np

from schemas.records import Hit

SEMANTIC_HIT = 0.45  # all-MiniLM-L6-v2: a sentence and its paraphrase ~0.5-0.7; unrelated ones < 0.25

log = logging.getLogger(__name__)

# bm25s pins its logger to DEBUG at import, which would print on every index build; leave it to the app's level.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

SUFFIXES = (".md", ".markdown", ".txt", ".json")
_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    """a an the and or but of in on at to for from by with into is are was were be been it its this that these
    those as so than then there here i me my we our you your he his she her they their what which who has have
    had do does did will would can could not no""".split()
)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“])")
_MONTHS = "january february march april may june july august september october november december".split()
_DATE = re.compile(r"\b(?:(" + "|".join(_MONTHS) + r")\s+)?((?:19|20)\d\d)\b", re.I)


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stopwords; a plain plural strip so "lanterns" finds "lantern" (no stemmer dep)."""
    out = []
    for word in _TOKEN.findall(text.lower()):
        if word in _STOP or (len(word) < 2 and not word.isdigit()):
            continue
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        out.append(word)
    return out


def find_date(text: str) -> Optional[str]:
    """The latest year the text names, as "YYYY" or "YYYY-MM" when a month comes with it."""
    best: Optional[tuple[int, int]] = None
    for month, year in _DATE.findall(text):
        key = (int(year), _MONTHS.index(month.lower()) + 1 if month else 0)
        if best is None or key > best:
            best = key
    if best is None:
        return None
    return f"{best[0]:04d}-{best[1]:02d}" if best[1] else f"{best[0]:04d}"


@dataclass(frozen=True)
class Passage:
    source: str
    title: str
    text: str
    date: Optional[str]


def _split_long(paragraph: str, max_chars: int) -> Iterator[str]:
    if len(paragraph) <= max_chars:
        yield paragraph
        return
    chunk = ""
    for sentence in _SENTENCE_END.split(paragraph):
        if chunk and len(chunk) + len(sentence) + 1 > max_chars:
            yield chunk
            chunk = ""
        chunk = f"{chunk} {sentence}".strip()
    if chunk:
        yield chunk


def _text_passages(text: str, default_title: str, max_chars: int) -> Iterator[tuple[str, str]]:
    """(title, paragraph) pairs; each paragraph is titled by the nearest heading above it."""
    title = default_title
    lines: list[str] = []

    def flush() -> Iterator[tuple[str, str]]:
        paragraph = " ".join(line.strip() for line in lines if line.strip())
        lines.clear()
        if paragraph:
            for piece in _split_long(paragraph, max_chars):
                yield title, piece

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            yield from flush()
            title = heading.group(1).strip() or title
        elif not line.strip():
            yield from flush()
        else:
            lines.append(line)
    yield from flush()


def _json_strings(value: Any, title: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if value.strip():
            yield title, value.strip()
    elif isinstance(value, list):
        for entry in value:
            yield from _json_strings(entry, title)
    elif isinstance(value, dict):
        named = next((value[k] for k in ("title", "name", "heading") if isinstance(value.get(k), str)), None)
        inner = named.strip() if named and named.strip() else title
        for key, entry in value.items():
            if entry is not named:
                yield from _json_strings(entry, inner)


class CorpusSearch:
    """`SearchBackend` over a local folder, indexed once at construction (and again by `refresh()` on change)."""

    name = "corpus"

    def __init__(self, path: Union[str, Path], *, max_passage_chars: int = 600, watch: bool = False,
                 embedder: Any = None) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ValueError(f"corpus folder {str(root)!r} does not exist or is not a directory")
        if max_passage_chars < 80:
            raise ValueError(f"max_passage_chars must be at least 80, got {max_passage_chars}")
        self.root = root.resolve()
        self.max_passage_chars = max_passage_chars
        self.watch = watch
        if embedder is not None and not callable(getattr(embedder, "embed_sync", None)):
            raise ValueError(f"{embedder!r} cannot embed passages (needs .embed_sync(texts))")
        self.embedder = embedder
        self._vectors: Optional[np.ndarray] = None
        self.skipped: list[str] = []
        self.passages: list[Passage] = []
        self._model: Optional[bm25s.BM25] = None
        self._signature: tuple = ()
        self.refresh(force=True)

    def _files(self) -> list[Path]:
        return sorted(
            p for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in
                                                                        p.relative_to(self.root).parts)
        )

    def _current_signature(self) -> tuple:
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in self._files())

    def refresh(self, force: bool = False) -> bool:
        """Rebuild the index if any file was added, removed or changed; True when it rebuilt."""
        signature = self._current_signature()
        if not force and signature == self._signature:
            return False
        passages: list[Passage] = []
        skipped: list[str] = []
        for file in self._files():
            source = file.relative_to(self.root).as_posix()
            try:
                passages += list(self._read(file, source))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                # One unreadable file should not take the whole corpus down; it is listed for the operator.
                skipped.append(f"{source}: {type(exc).__name__}: {exc}")
                log.warning("corpus: skipped %s: %s", source, exc)
        model = None
        if passages:
            model = bm25s.BM25()
            corpus_tokens = [tokenize(f"{p.title} {p.text}") or ["\x00"] for p in passages]
            model.index(corpus_tokens, show_progress=False)
        vectors = None
        if passages and self.embedder is not None:
            # Once per index build, never per search.
            vectors = np.stack(self.embedder.embed_sync([f"{p.title}. {p.text}" for p in passages]))
        self.passages, self.skipped, self._model, self._signature = passages, skipped, model, signature
        self._vectors = vectors
        return True

    def _read(self, file: Path, source: str) -> Iterator[Passage]:
        text = file.read_text(encoding="utf-8")
        title = file.stem.replace("-", " ").replace("_", " ")
        if file.suffix.lower() == ".json":
            pairs = list(_json_strings(json.loads(text), title))
            pairs = [(t, piece) for t, s in pairs for piece in _split_long(s, self.max_passage_chars)]
        elif file.suffix.lower() in (".md", ".markdown"):
            pairs = list(_text_passages(text, title, self.max_passage_chars))
        else:
            pairs = [(title, piece) for _, piece in _text_passages(text, title, self.max_passage_chars)]
        for passage_title, body in pairs:
            yield Passage(source=source, title=passage_title, text=body, date=find_date(f"{passage_title} {body}"))

    async def search(self, query: str, limit: int = 5) -> list[Hit]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search query is empty")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        if self.watch:
            self.refresh()
        query_vector = None
        if self._vectors is not None:
            (query_vector,) = await self.embedder.embed([query])
        # Scoring a small corpus takes well under a millisecond; it stays inline rather than paying a thread hop.
        return self.search_sync(query, limit, query_vector)

    def search_sync(self, query: str, limit: int = 5, query_vector: Any = None) -> list[Hit]:
        tokens = tokenize(query)
        if self._model is None or (not tokens and query_vector is None):
            return []
        scores = np.asarray(self._model.get_scores(tokens), dtype=float) if tokens else np.zeros(len(self.passages))
        similarity = None
        if self._vectors is not None:
            if query_vector is None:
                query_vector = self.embedder.embed_sync([query])[0]
            similarity = self._vectors @ np.asarray(query_vector, dtype=np.float32)
            best = float(scores.max()) if scores.size else 0.0
            lexical = scores / best if best > 0 else scores
            keep = (scores > 0) | (similarity >= SEMANTIC_HIT)
            scores = np.where(keep, 0.5 * lexical + 0.5 * np.clip(similarity, 0.0, 1.0), 0.0)
        order = np.argsort(-scores, kind="stable")[:limit]
        hits = []
        for index in order:
            score = float(scores[index])
            if score <= 0.0:
                break
            passage = self.passages[int(index)]
            hits.append(Hit(source=passage.source, title=passage.title, text=passage.text, score=round(score, 6),
                            backend=self.name, date=passage.date,
                            similarity=None if similarity is None else round(float(similarity[index]), 4)))
        return hits

"""The critique loop as a pure state machine: what happens after a round has been scored.

Every critic (heuristic or vision model) scores the drafts of a round and then asks `decide` what comes next, so
the stop rules live in one place and can be tested exhaustively without images, brokers or models:

- `accept`    the round's best draft reaches the threshold (and is `acceptable`: a draft measured as blank is not,
              whatever a vision model scored it);
- `exhausted` the round was the last one `max_rounds` allows, or it brought no improvement over the best draft of
              the earlier rounds (another round from the same feedback is unlikely to do better);
- `revise`    otherwise: the critique's feedback and suggestions re-enter enrichment for the next round.

The best draft of all rounds is carried along (`best_so_far`), so the result is the best image, not the last one.
A decision that ends the loop names its rule in `stop_reason`, which the critics copy into `Critique.stop_reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

from schemas.records import MAX_ROUNDS

# A later round must beat the best so far by more than this to count as an improvement: scores are rounded to 4
# places, and a change in the 5th is noise, not progress.
MIN_IMPROVEMENT = 1e-4

T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    verdict: str  # "accept" | "revise" | "exhausted"
    reason: str

    @property
    def stop_reason(self) -> Optional[str]:
        """Why the loop ends here, for `Critique.stop_reason`; None when it goes on."""
        return None if self.verdict == "revise" else self.reason


def decide(round_: int, max_rounds: int, threshold: float, score: float,
           previous_best: Optional[float], *, acceptable: bool = True) -> Decision:
    """What follows round `round_` (0-based) scoring `score`, given the best score of the rounds before it.

    `acceptable=False` (the best draft is broken) withholds `accept` only: the other rules still end the loop, so a
    broken draft is revised or exhausted exactly as a low-scoring one would be."""
    if round_ < 0:
        raise ValueError(f"round must be >= 0, got {round_}")
    if not 1 <= max_rounds <= MAX_ROUNDS:
        raise ValueError(f"max_rounds must be within 1..{MAX_ROUNDS}, got {max_rounds}")
    if score >= threshold and acceptable:
        return Decision("accept", f"score {score:.4f} reached the threshold {threshold:.4f}")
    if round_ + 1 >= max_rounds:
        return Decision("exhausted", f"max_rounds={max_rounds} reached")
    if previous_best is not None and score <= previous_best + MIN_IMPROVEMENT:
        return Decision("exhausted", f"no improvement: {score:.4f} after {previous_best:.4f}")
    if score >= threshold:
        return Decision("revise", f"score {score:.4f} reached the threshold, but the draft is broken")
    return Decision("revise", f"score {score:.4f} below the threshold {threshold:.4f}")


def best_so_far(best: Optional[T], best_score: Optional[float], candidate: T,
                score: float) -> tuple[T, float]:
    """The better of the best so far and this round's best; the earlier one keeps its place on a tie."""
    if best is None or best_score is None or score > best_score:
        return candidate, score
    return best, best_score


def rank(scores: Sequence[float]) -> list[int]:
    """Draft indexes, best first; equal scores keep their draft order (so draft 0 wins a tie)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


@dataclass(frozen=True)
class Trace:
    """One simulated run of the loop: the scores of each round's drafts, and what the loop did with them."""

    rounds: int
    verdicts: tuple[str, ...]
    best_round: int
    best_draft: int
    best_score: float


def run(round_scores: Sequence[Sequence[float]], max_rounds: int, threshold: float) -> Trace:
    """Drive `decide` over given per-round draft scores until it stops; the scores beyond the stop are unused.

    The stages do this across messages (one round per message); this function is the same walk in one call,
    for tests and for reasoning about the loop. Raises if the scores run out before the loop stops."""
    verdicts: list[str] = []
    best: Optional[tuple[int, int]] = None
    best_score: Optional[float] = None
    for round_ in range(MAX_ROUNDS + 1):
        if round_ >= len(round_scores):
            raise ValueError(f"the loop wanted round {round_} but only {len(round_scores)} were given")
        drafts = round_scores[round_]
        if not drafts:
            raise ValueError("a round has at least one draft")
        top = rank(drafts)[0]
        previous = best_score
        best, best_score = best_so_far(best, best_score, (round_, top), drafts[top])
        decision = decide(round_, max_rounds, threshold, drafts[top], previous)
        verdicts.append(decision.verdict)
        if decision.verdict != "revise":
            assert best is not None and best_score is not None
            return Trace(len(verdicts), tuple(verdicts), best[0], best[1], best_score)
    raise AssertionError("unreachable: decide stops by max_rounds")  # pragma: no cover

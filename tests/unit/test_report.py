"""What `gapstream run` and `submit --wait` print for a result: where the image is, what to do next, why it is less."""

from cli.report import format_result
from schemas.records import ImageRef, ResultRecord


def _image(name: str) -> ImageRef:
    return ImageRef(uri=f"file:///data/images/{name}.png", sha256="0" * 64, width=64, height=64, seed=1)


def test_a_completed_result_names_its_image_as_a_path_and_lists_the_other_drafts():
    result = ResultRecord(request_id="r1", user_id="ann", status="completed", rounds=2, score=0.875,
                          images=[_image("a"), _image("b")], best_image=_image("b"), prompt="a corgi on a beach",
                          degraded=["searcher: web search unavailable"])
    lines = format_result(result).splitlines()
    assert lines[0] == "request r1 for ann: completed after 2 round(s), score 0.88"
    assert "image: /data/images/b.png" in lines and "  draft: /data/images/a.png" in lines
    assert "  draft: /data/images/b.png" not in lines  # the best image is not listed again as a draft
    assert "prompt: a corgi on a beach" in lines
    assert [line for line in lines if line.startswith("degraded: ")] == ["degraded: searcher: web search unavailable"]


def test_a_question_says_how_to_answer_it_and_by_when():
    result = ResultRecord(request_id="r2", user_id="bob", status="needs_clarification", question="Which dog?",
                          expires_at="2026-12-01T12:00:00.000+00:00")
    lines = format_result(result).splitlines()
    assert "question: Which dog?" in lines
    assert ('answer with: gapstream answer r2 "..." --user bob (before 2026-12-01T12:00:00.000+00:00)') in lines

"""End to end in a real browser: headless Debian Chromium, driven by Playwright, against a real `gapstream ui`
process on the embedded stack (its own broker, Redis and stages, as a user starts it with one command).

No browser is downloaded: Playwright is pointed at the system's chromium (CI installs Debian's). Screenshots of
the submit, live and result pages are saved under the test's temporary folder and checked for being non-blank.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from streams.local import free_port

pytestmark = pytest.mark.browser
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
STARTUP_S = 120
PAGE_TIMEOUT_MS = 60_000


def chromium_path() -> str:
    found = os.environ.get("GAPSTREAM_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it), "
                    "or GAPSTREAM_TEST_CHROMIUM=/path/to/chrome")
    return found


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """`gapstream ui` on embedded defaults: no broker or Redis configured, so it starts its own."""
    home = tmp_path_factory.mktemp("ui-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("GAPSTREAM_KAFKA_BOOTSTRAP", "GAPSTREAM_REDIS_URL", "GAPSTREAM_UI_TOKEN")}
    env.update(GAPSTREAM_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(home / "ui.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from cli.main import main; main(sys.argv[1:])",
                             "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gapstream ui exited with {proc.returncode}: {(home / 'ui.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gapstream ui did not answer within {STARTUP_S} s: {(home / 'ui.log').read_text()[-3000:]}")
        time.sleep(0.3)
    import psutil

    services = psutil.Process(proc.pid).children(recursive=True)  # the embedded broker and redis-server
    try:
        yield base
    finally:
        proc.terminate()  # SIGTERM: uvicorn stops, then the stages, Redis and the broker
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        left = [p for p in services if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        names = [p.name() for p in left]
        for leftover in left:
            leftover.kill()
        assert code == 0, f"gapstream ui exited with {code} on SIGTERM: {(home / 'ui.log').read_text()[-2000:]}"
        assert not left, f"gapstream ui left its embedded services running: {names}"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the Python playwright package: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # "forget everything" asks once more
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def not_blank(path: Path) -> None:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
    assert colours is not None and len(colours) > 20, f"{path} looks blank: {colours and len(colours)} colours"
    assert spread > 5, f"{path} looks blank: grey-level spread {spread:.1f}"


def submit(page, base: str, user: str, prompt: str, *, drafts: str = "", ask: bool = False,
           parent: str = "", shot: Path | None = None) -> None:
    page.goto(f"{base}/?user={user}")
    page.fill("textarea[name=prompt]", prompt)
    if drafts:
        page.fill("input[name=drafts]", drafts)
    if parent:
        page.fill("input[name=parent_request_id]", parent)
    if ask:
        page.check("input[name=allow_clarification]")
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.click("#submit")


def on_result_page(page) -> None:
    page.wait_for_selector("#status", timeout=PAGE_TIMEOUT_MS)


def user() -> str:
    return f"u{uuid.uuid4().hex[:8]}"


def test_submit_watch_live_and_read_the_result(ui_server, page, tmp_path):
    shots = {name: tmp_path / f"{name}.png" for name in ("submit", "live", "result")}
    prompt = 'a lighthouse at dusk <script>window.__pwned = 1</script>'
    submit(page, ui_server, user(), prompt, drafts="2", shot=shots["submit"])

    # The live page: each stage appears as it finishes, then the result is announced.
    page.wait_for_url("**/u/*/r/*", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector("#live-status[data-status]", timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(shots["live"]), full_page=True)
    stages = page.eval_on_selector_all("#stages li", "els => els.map(e => e.getAttribute('data-stage'))")
    assert {"planner", "searcher", "enricher", "generator", "critic"} <= set(stages), stages
    assert page.get_attribute("#live-status", "data-status") == "completed"
    assert page.eval_on_selector_all("#drafts img", "els => els.length") >= 1

    # The result page opens by itself.
    on_result_page(page)
    assert page.inner_text("#status").strip().lower() == "completed"
    page.wait_for_function("() => { const i = document.querySelector('#final-image');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    assert page.eval_on_selector("#final-image", "i => i.naturalWidth") > 0
    assert page.eval_on_selector_all("#gaps tbody tr", "rows => rows.length") >= 1
    assert page.eval_on_selector_all("#checklist tbody tr", "rows => rows.length") >= 1
    assert page.eval_on_selector_all(".round .drafts figure", "figs => figs.length") == 2
    # Markup in the prompt is text on the page, and the script in it never ran.
    assert page.inner_text("#user-prompt") == prompt
    assert page.evaluate("() => window.__pwned") is None
    assert page.eval_on_selector_all("main script", "s => s.length") == 0
    page.screenshot(path=shots["result"], full_page=True)
    for shot in shots.values():
        not_blank(shot)

    # The user's gallery has it, newest first, with its image.
    page.click("nav >> text=History")
    page.wait_for_selector("#gallery .card img")
    assert prompt in page.inner_text("#gallery")
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)


def test_answer_a_clarifying_question_and_the_request_resumes(ui_server, page, tmp_path):
    submit(page, ui_server, user(), "draw my logo", ask=True)
    page.wait_for_selector("#question", timeout=PAGE_TIMEOUT_MS)
    assert "logo" in page.inner_text(".question-text").lower()
    page.screenshot(path=str(tmp_path / "question.png"), full_page=True)
    page.fill("#answer-form input[name=answer]", "a red fox in a circle")
    page.click("#answer-form button")
    page.wait_for_selector("#live", timeout=PAGE_TIMEOUT_MS)  # the same request, resuming
    page.wait_for_selector("#status.status-completed", timeout=PAGE_TIMEOUT_MS)
    assert "a red fox in a circle" in page.inner_text("#gaps")
    page.wait_for_function("() => document.querySelector('#final-image').naturalWidth > 0")
    not_blank(tmp_path / "question.png")


def test_a_failed_request_says_why(ui_server, page, tmp_path):
    submit(page, ui_server, user(), "make it blue", parent="no-such-request")
    page.wait_for_selector("#status.status-failed", timeout=PAGE_TIMEOUT_MS)
    assert "not found" in page.inner_text("#failure")
    page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)


def test_remove_a_memory_item_and_forget_everything(ui_server, page, tmp_path):
    who = user()
    submit(page, ui_server, who, "draw my logo", ask=True)
    page.wait_for_selector("#answer-form", timeout=PAGE_TIMEOUT_MS)
    page.fill("#answer-form input[name=answer]", "a blue whale")
    page.click("#answer-form button")
    page.wait_for_selector("#status.status-completed", timeout=PAGE_TIMEOUT_MS)

    page.goto(f"{ui_server}/u/{who}/memory")
    rows = page.locator("#memory tbody tr[data-item]")
    before = rows.count()
    texts = page.inner_text("#memory")
    assert before >= 2 and "a blue whale" in texts, texts
    page.screenshot(path=str(tmp_path / "memory.png"), full_page=True)
    answer_row = page.locator("#memory tbody tr[data-item]", has_text="a blue whale")
    item_id = answer_row.get_attribute("data-item")
    answer_row.locator("button").click()
    page.wait_for_selector("#notice")
    assert "forgot 1 item" in page.inner_text("#notice")
    assert page.locator(f'#memory tr[data-item="{item_id}"]').count() == 0
    assert rows.count() == before - 1

    page.check("#forget-all input[name=confirm]")
    page.click("#forget-all button")
    page.wait_for_selector("#notice")
    assert "Nothing remembered" in page.inner_text("#memory")
    page.goto(f"{ui_server}/u/{who}/history")
    assert "0 result(s)" in page.inner_text("main")

"""The chat app in a real browser: Playwright driving Debian's chromium against the launched server.

Screenshots go to artifacts/screenshots/ (look at them after a change to the layout). The module's page is a
1366 x 768 laptop; test_a_phone_* uses a 390 x 844 phone. The served model is the tiny one flagged as the demo
model, so the page shows its demo notice.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from browser_harness import MARKS, SHOTS, chromium
from gradio_client import Client
from gradio_client.utils import Status
from ui_harness import StepGate, serve, tiny_studio, write_examples

pytestmark = MARKS
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)"
)
expect = sync_api.expect

# The length of the last assistant bubble's text.
LAST_ANSWER_LENGTH = """() => {
  const bots = document.querySelectorAll('#chat [data-testid="bot"]');
  return bots.length ? bots[bots.length - 1].innerText.trim().length : 0;
}"""


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    return write_examples(tmp_path_factory.mktemp("browser-examples"))


LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def gate() -> StepGate:
    return StepGate()


@pytest.fixture(scope="module")
def url(tiny_location, examples, gate):
    # 5 ms per token: four drawings take several seconds, long enough to press Stop in the middle of it.
    demo = replace(tiny_location, is_demo=True)
    with serve(tiny_studio(demo, step_delay_s=0.005, gate=gate), examples["phantom_a"].parent) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with chromium(sync_api) as b:
        yield b


@pytest.fixture(scope="module")
def page(browser, url):
    """One page for the module's tests (in file order): a session with a growing conversation, as a user's."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=LAPTOP)
    page.goto(url)
    expect(page.locator("#message textarea")).to_be_visible(timeout=30_000)
    shot(page, "00-laptop-at-load", full=False)
    # Short answers keep the test fast: set max new tokens in the settings panel.
    page.get_by_text("Generation settings").click()
    tokens = page.get_by_label("number input for Max new tokens (text answers)")
    tokens.fill("24")
    tokens.press("Enter")
    page.get_by_text("Generation settings").click()
    expect(tokens).to_be_hidden()
    yield page
    page.close()


def shot(page, name: str, full: bool = True) -> None:
    """A screenshot: the whole page, or (full=False) what the viewport shows without scrolling."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def on_screen(page, *selectors: str, timeout_ms: int = 5_000) -> bool:
    """Whether the first element of each selector lies entirely within the viewport (no scrolling), once the
    layout settles: waits up to timeout_ms for it (images load and panels open after an answer), then
    fails with every element's box."""
    try:
        page.wait_for_function(IN_VIEW_JS, arg=list(selectors), timeout=timeout_ms)
        return True
    except sync_api.TimeoutError:
        boxes = {s: page.locator(s).first.bounding_box() for s in selectors}
        raise AssertionError(f"not all on screen in {page.viewport_size}: {boxes}") from None


IN_VIEW_JS = """(selectors) => selectors.every((s) => {
  const e = document.querySelector(s);
  if (!e) return false;
  const r = e.getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
})"""


def fits_width(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"]


def send(page, text: str) -> None:
    box = page.locator("#message textarea")
    box.fill(text)
    box.press("Enter")


def answered(page, before: int) -> None:
    """Wait until the conversation holds one more finished answer (each has a provenance accordion)."""
    expect(page.get_by_role("button", name="Details & provenance")).to_have_count(before + 1, timeout=60_000)


def wait_for(job, *codes: Status, timeout_s: float = 30) -> None:
    """Wait until a gradio_client job reaches one of codes (running: ITERATING; queued: IN_QUEUE)."""
    deadline = time.monotonic() + timeout_s
    while job.status().code not in codes:
        assert time.monotonic() < deadline, f"job stayed {job.status().code}"
        time.sleep(0.02)


def n_answers(page) -> int:
    return page.get_by_role("button", name="Details & provenance").count()


def show_model_view(page) -> None:
    if not page.get_by_text("what the LLM actually receives").is_visible():
        page.get_by_text("Model view: what the model receives").click()
    expect(page.get_by_text("what the LLM actually receives")).to_be_visible()


def test_a_laptop_shows_the_box_and_the_examples_at_load(page):
    page.evaluate("window.scrollTo(0, 0)")
    assert on_screen(page, "#message", "#examples button") and fits_width(page)
    expect(page.get_by_text("DEMO MODEL")).to_have_count(1)  # one demo notice, not a banner and a status
    expect(page.get_by_text("trained on synthetic phantoms")).to_have_count(1)
    expect(page.locator("#notice .notice-rest")).to_be_visible()  # the whole notice, open, on a laptop
    expect(page.locator("#xray-strip")).to_be_hidden()  # the side panel shows the X-ray here
    expect(page.locator("#chat .top-panel")).to_be_hidden()  # no clear / copy icons over the conversation
    expect(page.get_by_role("button", name="New chat")).to_be_visible()


LABEL_OVER_IMAGE_JS = """() => [...document.querySelectorAll('#model-view img')].map((img) => {
  const label = img.closest('.block').querySelector('[data-testid="block-label"]');
  return label !== null && label.getBoundingClientRect().bottom > img.getBoundingClientRect().top + 1;
})"""
# Whether the last drawing's sentence (with its self-check) and the top of its image are in the chat's view.
DRAWING_IN_VIEW_JS = """() => {
  const chat = document.querySelector('#chat').getBoundingClientRect();
  const said = [...document.querySelectorAll('#chat [data-testid="bot"]')]
    .filter((m) => m.innerText.includes('marked SYNTHETIC')).pop();
  const img = [...document.querySelectorAll('#chat [data-testid="bot"] img[src*="synthetic"]')].pop();
  if (!said || !img) return false;
  const s = said.getBoundingClientRect(), i = img.getBoundingClientRect();
  return s.top >= chat.top && s.bottom <= chat.bottom && i.top >= chat.top && i.top + 40 < chat.bottom;
}"""


def test_upload_example_ask_and_see_the_streamed_answer(page, gate):
    shot(page, "01-start")
    page.get_by_role("button", name="Ask: effusion?").click()  # an example: image + question
    expect(page.locator("#message textarea")).to_have_value("Is there a pleural effusion?")
    set_seed(page, "5")  # a fixed seed: the same five tokens (no end among them) every run
    gate.hold(4)  # the model stops after 5 tokens (the prefill's, then 4 steps) until released
    try:
        page.locator("#message textarea").press("Enter")
        expect(page.locator('#chat [data-testid="user"] img').first).to_be_visible(timeout=20_000)
        page.wait_for_function(f"() => ({LAST_ANSWER_LENGTH})() > 0", timeout=30_000)
        assert n_answers(page) == 0  # still answering: what shows is part of the answer
        partial = page.evaluate(LAST_ANSWER_LENGTH)
    finally:
        gate.release()
    answered(page, 0)
    expect(page.get_by_role("button", name="Details & provenance").first).to_contain_text("seed 5")
    set_seed(page, "")  # random again for the later tests
    assert page.evaluate(LAST_ANSWER_LENGTH) > partial, "the rest of the answer did not follow its start"
    expect(page.locator("#overview img")).to_be_visible()  # the current X-ray panel
    page.evaluate("window.scrollTo(0, 0)")
    assert on_screen(page, "#overview img", "#message")  # both, without scrolling
    shot(page, "01b-laptop-answered", full=False)
    show_model_view(page)
    expect(page.locator("#model-view img")).to_have_count(2)
    for i in range(2):
        expect(page.locator("#model-view img").nth(i)).to_be_visible()
    page.get_by_role("button", name="Details & provenance").first.click()
    expect(page.get_by_text("Precision:").first).to_be_visible()
    shot(page, "02-asked")


def test_dicom_upload_shows_window_and_histogram(page, examples):
    before = n_answers(page)
    page.locator("#message input[type=file]").set_input_files(str(examples["dicom"]))
    send(page, "Is there cardiomegaly?")
    expect(page.get_by_text("Display window").first).to_be_visible(timeout=60_000)
    show_model_view(page)
    expect(page.get_by_text("DICOM stored values and display window")).to_be_visible()
    expect(page.locator("#model-view img")).to_have_count(3)
    overlaps = page.evaluate(LABEL_OVER_IMAGE_JS)
    assert overlaps == [False, False, False], "a model-view label covers its picture"
    answered(page, before)
    shot(page, "03-dicom")


def test_draw_shows_the_image_in_the_chat(page):
    before = n_answers(page)
    send(page, "Draw a chest X-ray: Large left pleural effusion. Heart size is normal.")
    expect(page.get_by_text(re.compile(r"row \d+ of 16")).first).to_be_visible(timeout=30_000)  # a preview
    shot(page, "04-drawing")
    answered(page, before)
    expect(page.get_by_text("marked SYNTHETIC").first).to_be_visible()
    expect(page.get_by_text("Self-check (the model reading its own drawing)").first).to_be_visible()
    expect(page.locator('#chat [data-testid="bot"] img[src*="synthetic"]').first).to_be_visible()
    page.wait_for_function(DRAWING_IN_VIEW_JS, timeout=5_000)  # not only the bottom strip and the links
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "05a-drawn-view", full=False)
    page.get_by_role("button", name="Confidence map").first.click()
    conf = page.locator('#chat img[src*="confidence-map"]').first
    expect(conf).to_be_visible(timeout=10_000)
    conf.scroll_into_view_if_needed()
    page.wait_for_timeout(400)  # the accordion's opening animation
    expect(page.get_by_role("link", name="-synthetic-cxr-").first).to_be_visible()
    shot(page, "05-drawn")


def set_seed(page, seed: str) -> None:
    field = page.locator("#seed textarea, #seed input").first
    if not field.is_visible():
        page.get_by_text("Generation settings").click()
    field.fill(seed)
    page.get_by_text("Generation settings").click()
    expect(field).to_be_hidden()


def set_candidates(page, n: int) -> None:
    field = page.get_by_label("number input for Draw: candidates")
    if not field.is_visible():
        page.get_by_text("Generation settings").click()
    field.fill(str(n))
    field.press("Enter")


def test_guidance_set_in_the_settings_shows_in_the_drawings_details(page):
    field = page.get_by_label("number input for Guidance (drawings)")
    page.get_by_text("Generation settings").click()
    expect(field).to_have_value("1")  # this checkpoint declares no guidance of its own
    default = "the other lung's findings (each side drawn from its own; else as below)"
    expect(page.get_by_label(default)).to_be_checked()
    field.fill("2")
    field.press("Enter")
    page.get_by_text("Generation settings").click()
    before = n_answers(page)
    send(page, "Draw a chest X-ray: Large right pleural effusion.")
    answered(page, before)
    page.get_by_role("button", name=re.compile("Details & provenance")).last.click()
    expect(page.get_by_text("guidance 2 (away from the other side, size and zone)").last).to_be_visible()
    page.get_by_role("button", name=re.compile("Details & provenance")).last.click()
    page.get_by_text("Generation settings").click()
    field.fill("1")  # back to the default for the tests after this one
    field.press("Enter")
    page.get_by_text("Generation settings").click()


def test_candidates_read_in_full_with_one_details_panel_and_one_zip(page):
    set_candidates(page, 2)
    before, maps = n_answers(page), page.get_by_role("button", name="Confidence map").count()
    send(page, "Draw a chest X-ray: Small left pleural effusion.")
    answered(page, before)  # exactly one more details panel for the two drawings
    last = page.locator('#chat [data-testid="bot"]')
    for i in (1, 2):  # each verdict in full in the text, not cut in a caption
        expect(page.get_by_text(re.compile(rf"^{i} \(seed \d+\): (agrees|sees|misses)")).last).to_be_visible()
    expect(page.get_by_role("button", name="Confidence map")).to_have_count(maps + 1)
    expect(page.get_by_role("link", name=re.compile(r"synthetic-cxr-2-candidates.*\.zip"))).to_be_visible()
    expect(last.get_by_text("drawing…")).to_have_count(0)
    page.wait_for_function(DRAWING_IN_VIEW_JS, timeout=5_000)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "05b-candidates", full=False)


def test_stop_returns_to_idle_and_keeps_the_partial_answer(page):
    set_candidates(page, 4)
    send(page, "Draw a chest X-ray: Small right pneumothorax.")
    stop = page.locator("#message button.stop-button")
    expect(page.get_by_text("Drawing candidate 1 of 4").first).to_be_visible(timeout=30_000)
    stop.click()
    expect(page.get_by_text("(stopped while drawing").first).to_be_visible(timeout=15_000)
    expect(page.locator("#message button.submit-button")).to_be_visible(timeout=15_000)
    expect(stop).to_be_hidden()
    partial = page.locator('#chat [data-testid="bot"]').last.locator('img[src*="preview"]')
    expect(partial.first).to_be_visible()  # the partial drawing stays in the chat
    expect(page.locator('#chat [data-testid="bot"]').last.get_by_text("1 stopped")).to_be_visible()
    page.wait_for_timeout(1000)  # the view settles (SCROLL_TO_DRAWING runs twice within 0.9 s)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "06-stopped", full=False)
    before = n_answers(page)
    send(page, "What is a pneumothorax?")  # idle again: a new message is answered
    answered(page, before)


PASTED = (
    "Findings: Heart size is normal. There is a small left pleural effusion with adjacent atelectasis. "
    "No pneumothorax."
)


def test_pasted_findings_choice_redo_and_draw_without_an_xray(page):
    set_candidates(page, 1)  # the stop test drew four
    before = n_answers(page)
    send(page, PASTED)  # an X-ray is current (earlier tests): Auto asks which is meant
    draw = page.get_by_role("button", name="Draw these findings")
    expect(draw).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Ask about the current X-ray")).to_be_visible()
    shot(page, "07-draw-or-ask")
    draw.click()
    answered(page, before)
    expect(page.get_by_role("button", name=re.compile(r"^Mode: Draw · Details"))).to_be_visible()
    expect(page.locator('#chat [data-testid="bot"] img[src*="synthetic"]').last).to_be_visible()
    page.get_by_role("button", name="Redo as Report").last.click()  # one click: the other mode
    answered(page, before + 1)
    expect(page.get_by_role("button", name=re.compile(r"^Mode: Report · Details"))).to_be_visible()
    page.locator("#forget").click()  # no X-ray now: pasted findings are drawn at once
    auto_draws = page.get_by_role("button", name=re.compile(r"^Mode: Draw \(auto\) · Details"))
    before, drawn = n_answers(page), auto_draws.count()
    send(page, PASTED)
    answered(page, before)
    expect(auto_draws).to_have_count(drawn + 1)
    expect(page.get_by_role("button", name="Redo as Ask")).to_be_visible()
    shot(page, "08-pasted-findings-drawn")


def messages(page) -> int:
    return page.locator('#chat [data-testid="user"], #chat [data-testid="bot"]').count()


def idle_with(page, text: str) -> None:
    """The box holds `text` as typed, with Send (not Stop), and no error covers the conversation."""
    expect(page.locator("#message textarea")).to_have_value(text)
    expect(page.locator("#message button.submit-button")).to_be_visible(timeout=10_000)
    expect(page.locator("#message button.stop-button")).to_be_hidden()
    expect(page.locator('#chat [data-testid="status-tracker"] .error')).to_be_hidden()


def test_errors_keep_the_conversation_the_text_and_send(page, tmp_path):
    shown = messages(page)
    assert shown > 0  # the earlier tests' conversation
    send(page, "   ")
    expect(page.get_by_text("The message is empty").first).to_be_visible(timeout=15_000)
    idle_with(page, "   ")
    assert messages(page) == shown
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n")
    page.locator("#message input[type=file]").set_input_files(str(bad))
    send(page, "Is this normal?")
    expect(page.get_by_text("PDF document, not an image").first).to_be_visible(timeout=15_000)
    idle_with(page, "Is this normal?")
    expect(page.locator('#chat [data-testid="bot"]').first).to_be_visible()
    assert messages(page) == shown  # the conversation as it was: no error pill in its place
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "10-errors-keep-the-conversation", full=False)
    page.locator("#message textarea").fill("")


def test_an_example_sets_its_mode_for_its_own_request_only(page):
    mode = page.locator("#mode")
    page.get_by_role("button", name="Draw: normal chest").click()
    expect(mode.locator('input[value="Draw"]')).to_be_checked()  # the control shows the change...
    expect(page.locator("#mode-info")).to_contain_text("Draw:")  # ...and the hint follows it
    drawn = page.locator('#chat [data-testid="bot"] img[src*="synthetic"]').count()
    before = n_answers(page)
    page.locator("#message textarea").press("Enter")
    answered(page, before)
    expect(page.get_by_role("button", name=re.compile(r"^Mode: Draw · Details")).last).to_be_visible()
    expect(mode.locator('input[value="Auto"]')).to_be_checked()  # the user's mode is back
    expect(page.locator("#mode-info")).to_contain_text("Auto:")
    send(page, "Is there a pneumothorax?")
    answered(page, before + 1)
    titles = page.get_by_role("button", name=re.compile("Details & provenance"))
    expect(titles.last).to_have_text(re.compile(r"Mode: Ask .*\(auto\) · Details"))
    expect(page.locator('#chat [data-testid="bot"] img[src*="synthetic"]')).to_have_count(drawn + 1)
    shot(page, "11-example-mode-once", full=False)


def test_a_phone_shows_the_box_at_load_and_nothing_wider(browser, url, examples):
    page = browser.new_page(viewport=PHONE)
    try:
        page.goto(url)
        expect(page.locator("#message textarea")).to_be_visible(timeout=30_000)
        assert on_screen(page, "#message") and fits_width(page)
        phone_notice_is_compact_with_its_full_text_one_tap_away(page)
        page.locator("#message input[type=file]").set_input_files(str(examples["phantom_b"]))
        expect(page.locator("#message img").first).to_be_visible(timeout=10_000)
        page.locator("#message textarea").press("Enter")
        answered(page, 0)
        assert fits_width(page)
        expect(page.locator('#chat [data-testid="user"] img').first).to_be_visible()
        strip = page.locator("#xray-strip")
        expect(strip.locator("img")).to_be_visible()  # the current X-ray, compact, above the box
        expect(strip).to_contain_text("phantom_b.png")
        expect(strip).to_contain_text("PNG · 96 × 96 px")
        # Both without scrolling, as the page is after the upload and the answer.
        assert on_screen(page, "#message", "#xray-strip img")
        shot(page, "13-phone-report", full=False)
        strip.locator("a").click()  # the strip leads to the full panel
        expect(page.locator("#overview img")).to_be_in_viewport()
        shot(page, "14-phone-panel", full=False)
    finally:
        page.close()


# Markdown a model may write (its answers are rendered as such), each part wider than a phone (390 px): inline code
# and a fenced block (they keep their spaces), a table (its columns) and display math (its line). Short enough
# for the tiny model's 512-token context (a longer message is refused, and stays in the box).
WIDE_ROW = "| " + " | ".join(f"column{i}" for i in range(8)) + " |"
WIDE_MARKDOWN = "\n\n".join(
    [
        "Here: `" + "x" * 50 + "`",
        "```\n" + "y" * 50 + "\n```",
        "\n".join([WIDE_ROW, "|" + "---|" * 8, WIDE_ROW]),
        "$$" + "z" * 50 + "$$",
    ]
)


def test_a_phone_keeps_code_tables_and_math_in_their_message(browser, url):
    page = browser.new_page(viewport=PHONE)
    try:
        page.goto(url)
        expect(page.locator("#message textarea")).to_be_visible(timeout=30_000)
        send(page, WIDE_MARKDOWN)  # the user's message renders markdown as the model's does
        user = page.locator('#chat [data-testid="user"]').last
        for part in ("code", "pre", "table", ".katex-display"):
            expect(user.locator(part).first).to_be_visible(timeout=30_000)
        assert fits_width(page), page.evaluate("() => document.documentElement.scrollWidth")
        assert right_edge(user) <= PHONE["width"]
        for part in ("code", "pre", "table", ".katex-display"):  # each wraps or scrolls inside the message
            assert right_edge(user.locator(part).first) <= right_edge(user), part
        head = user.locator(
            "th"
        ).first  # a cell keeps its words whole (the table scrolls, its cells don't break)
        assert head.evaluate(ONE_LINE_JS), head.bounding_box()
        shot(page, "15-phone-wide-markdown", full=False)
    finally:
        page.close()


ONE_LINE_JS = "(e) => { const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length === 1; }"


def right_edge(locator) -> float:
    box = locator.bounding_box()
    return box["x"] + box["width"]


def phone_notice_is_compact_with_its_full_text_one_tap_away(page) -> None:
    notice, rest = page.locator("#notice"), page.locator("#notice .notice-rest")
    expect(page.get_by_text("DEMO MODEL")).to_have_count(1)
    expect(notice.locator("summary")).to_contain_text("Research use only — not a medical device.")
    expect(rest).to_be_hidden()
    assert notice.bounding_box()["height"] <= 0.06 * PHONE["height"]  # was a fifth of the screen
    shot(page, "12-phone-at-load", full=False)
    notice.get_by_text("more").click()
    expect(rest).to_be_visible()
    expect(rest).to_contain_text("must not guide diagnosis")
    expect(rest).to_contain_text("trained on synthetic phantoms")
    shot(page, "12b-phone-notice-open", full=False)
    notice.locator("summary").click()
    expect(rest).to_be_hidden()


def test_a_full_queue_keeps_the_message_in_the_box(browser, tiny_location, examples):
    """With the queue full, Send explains what to do, the text and the X-ray stay in the box, Send stays;
    once there is room, the same message is sent as it is."""
    studio = tiny_studio(tiny_location, step_delay_s=0.005)
    with serve(studio, examples["phantom_a"].parent, queue_size=1) as address:
        clients = [Client(address, verbose=False, download_files=False) for _ in range(2)]
        running = clients[0].submit(
            {"text": "Small right pneumothorax.", "files": []},
            "Draw",
            1.0,
            0.92,
            16,
            "1",
            4,
            api_name="/chat",
        )
        wait_for(running, Status.ITERATING)
        waiting = clients[1].submit(
            {"text": "Hi", "files": []}, "Auto", 1.0, 0.92, 16, "1", 1, api_name="/chat"
        )
        wait_for(waiting, Status.IN_QUEUE)
        page = browser.new_page(viewport=LAPTOP)
        try:
            page.goto(address)
            box = page.locator("#message textarea")
            expect(box).to_be_visible(timeout=30_000)
            page.locator("#message input[type=file]").set_input_files(str(examples["phantom_b"]))
            expect(page.locator("#message img").first).to_be_visible(timeout=10_000)  # the attached X-ray
            send(page, "Is there an effusion?")
            expect(page.get_by_text("The model is busy").first).to_be_visible(timeout=15_000)
            shot(page, "09-queue-full")
            expect(box).to_have_value("Is there an effusion?")
            expect(page.locator("#message img").first).to_be_visible()
            expect(page.locator("#message button.submit-button")).to_be_visible()
            expect(page.locator("#message button.stop-button")).to_be_hidden()
            expect(page.locator('#chat [data-testid="user"]')).to_have_count(0)  # nothing was sent
            clients[0].predict(api_name="/stop")
            running.cancel()
            waiting.result()
            box.press("Enter")  # room again: the message in the box is sent as it is
            expect(page.locator('#chat [data-testid="user"] img').first).to_be_visible(timeout=20_000)
            answered(page, 0)
            expect(box).to_have_value("")
        finally:
            page.close()

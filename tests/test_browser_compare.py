"""Several models in a real browser (#20): the model picker and Compare at 1366 x 768, with Debian's chromium
driven by Playwright against the launched server. The two models: the tiny random token model and a tiny
random LLaVA checkpoint served by the adapter backend (which cannot draw). Screenshots go to
artifacts/screenshots/2*.png."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from browser_harness import MARKS, SHOTS, chromium
from llava_tiny import write_tiny_llava
from ui_harness import serve, tiny_studio, write_examples

from llmcxr_app.config import ModelLocation, RuntimeConfig, Settings
from llmcxr_app.studio.build import load_studio

LAPTOP = {"width": 1366, "height": 768}

pytestmark = MARKS
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)"
)
expect = sync_api.expect


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    return write_examples(tmp_path_factory.mktemp("compare-examples"))


@pytest.fixture(scope="module")
def browser():
    """One Playwright and one chromium for the module (the sync API cannot run two at once)."""
    with chromium(sync_api) as browser:
        yield browser


@pytest.fixture(scope="module")
def page(browser, tiny_location, tiny_tokenizer, examples, tmp_path_factory):
    llava = tmp_path_factory.mktemp("llava")
    write_tiny_llava(llava, tiny_tokenizer, "gpt_neox")
    adapter = ModelLocation(str(llava), "", "", name="tiny llava", is_demo=True)
    models = {
        "demo-a": tiny_studio(replace(tiny_location, name="tiny A", is_demo=True), step_delay_s=0.005),
        "llava": load_studio(Settings(adapter, RuntimeConfig(device="cpu", warmup=False))),
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve(models, examples["phantom_a"].parent) as url:
        page = browser.new_page(viewport=LAPTOP)
        page.goto(url)
        expect(page.locator("#message textarea")).to_be_visible(timeout=30_000)
        yield page
        page.close()


def details(page):
    return page.get_by_role("button", name=re.compile("Details & provenance"))


def in_view(page, selector: str) -> None:
    """Wait until the first element of selector lies entirely inside the viewport."""
    page.wait_for_function(
        """(s) => { const r = document.querySelector(s)?.getBoundingClientRect();
          return !!r && r.height > 0 && r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }""",
        arg=selector,
        timeout=5_000,
    )


def test_the_picker_is_on_screen_with_the_box_and_picks_the_model(page):
    page.screenshot(path=str(SHOTS / "20-models-at-load.png"))
    for selector in ("#model-picker", "#compare", "#message", "#examples button"):
        in_view(page, selector)
    page.locator("#model-picker input").click()
    page.get_by_role("option", name="llava").click()
    expect(page.locator("#model-picker input")).to_have_value("llava")
    page.locator("#message textarea").fill("What is a pleural effusion?")
    page.locator("#message textarea").press("Enter")
    expect(details(page)).to_have_count(1, timeout=60_000)
    expect(details(page).last).to_have_text(re.compile(r"by llava \(adapter family\)\s*$"))


def test_compare_answers_side_by_side_with_each_model_named(page, examples):
    page.locator("#message input[type=file]").set_input_files(str(examples["phantom_b"]))
    expect(page.locator("#message img").first).to_be_visible(timeout=10_000)
    page.locator("#message textarea").fill("Is there a pleural effusion?")
    expect(page.locator("#compare-with input")).to_have_value("demo-a")  # never the picked model itself
    page.locator("#compare").click()
    expect(page.locator("#message button.stop-button")).to_be_visible(timeout=10_000)  # Stop while both run
    expect(details(page)).to_have_count(3, timeout=60_000)
    cols = page.locator("#chat .compare-col")
    expect(cols).to_have_count(2)
    expect(cols.nth(0).locator(".compare-head")).to_have_text("llava (adapter family)")
    expect(cols.nth(1).locator(".compare-head")).to_have_text("demo-a (token family)")
    a, b = cols.nth(0).bounding_box(), cols.nth(1).bounding_box()
    assert abs(a["y"] - b["y"]) < 2 and a["x"] + a["width"] <= b["x"]  # side by side, not stacked
    for i, label in ((1, r"llava \(adapter family\)"), (2, r"demo-a \(token family\)")):
        expect(details(page).nth(i)).to_have_text(re.compile(rf"^\s*Compare · .* by {label}\s*$"))
    expect(page.locator("#message button.submit-button")).to_be_visible()
    expect(page.locator("#overview img")).to_be_visible()  # the attached X-ray is the current one
    expect(page.get_by_role("link", name=re.compile(r"llava-answer-.*\.json"))).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"demo-a-answer-.*\.json"))).to_be_visible()
    cols.nth(0).evaluate("(e) => e.scrollIntoView({block: 'start'})")  # the columns' heads in the chat's view
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "21-compare-laptop.png"))


def test_a_model_that_cannot_draw_says_so_and_keeps_the_message(page):
    shown = page.locator('#chat [data-testid="user"], #chat [data-testid="bot"]').count()
    page.locator("#mode").get_by_text("Draw", exact=True).click()
    page.locator("#message textarea").fill("Small right pneumothorax.")
    page.locator("#message textarea").press("Enter")
    expect(page.get_by_text("llava cannot draw X-rays").first).to_be_visible(timeout=15_000)
    expect(page.locator("#message textarea")).to_have_value("Small right pneumothorax.")
    expect(page.locator("#message button.submit-button")).to_be_visible()
    assert page.locator('#chat [data-testid="user"], #chat [data-testid="bot"]').count() == shown
    page.screenshot(path=str(SHOTS / "22-cannot-draw.png"))


@pytest.fixture(scope="module")
def demo_page(browser):
    """The two shipped demo models (token and adapter), as `python app.py --models demo,demo-adapter`."""
    from llmcxr_app.cli_args import parse_models
    from llmcxr_app.config import DEMO_MODEL

    runtime = RuntimeConfig(device="cpu", fast_path=False, warmup=False)
    names = ("demo", "demo-adapter")
    locations = parse_models(",".join(names))
    models = {n: load_studio(Settings(loc, runtime)) for n, loc in zip(names, locations, strict=True)}
    examples_dir = Path(DEMO_MODEL.llm).parents[2] / "assets" / "examples"
    with serve(models, examples_dir) as url:
        page = browser.new_page(viewport=LAPTOP)
        page.goto(url)
        expect(page.locator("#message textarea")).to_be_visible(timeout=30_000)
        yield page, examples_dir
        page.close()


def test_compare_runs_on_the_two_demo_models(demo_page):
    page, examples_dir = demo_page
    page.locator("#message input[type=file]").set_input_files(str(examples_dir / "effusion_right_large.png"))
    expect(page.locator("#message img").first).to_be_visible(timeout=10_000)
    page.locator("#message textarea").fill("Is there a pleural effusion?")
    expect(page.locator("#compare-with input")).to_have_value("demo-adapter")
    page.locator("#compare").click()
    expect(details(page)).to_have_count(2, timeout=120_000)  # one per column
    cols = page.locator("#chat .compare-col")
    expect(cols.nth(0).locator(".compare-head")).to_have_text("demo (token family)")
    expect(cols.nth(1).locator(".compare-head")).to_have_text("demo-adapter (adapter family)")
    for i in range(2):  # each model wrote an answer of its own (a word at least), not an error
        expect(cols.nth(i)).to_contain_text(re.compile(r"\b(yes|no|effusion)\b", re.IGNORECASE))
    cols.nth(0).evaluate("(e) => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SHOTS / "23-compare-demo-models.png"))

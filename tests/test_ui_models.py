"""Several models in one app (#20): the picker, Compare and a model that cannot draw, through gradio_client
against the launched server. The models: the tiny random token model loaded under several names, one copy
failing after a few tokens, and a tiny random LLaVA checkpoint served by the adapter backend (it cannot
draw). The UI calls them all through the same ChatModel protocol."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from llava_tiny import write_tiny_llava
from ui_harness import files, serve, texts, tiny_studio, write_examples

from llmcxr_app import protocol
from llmcxr_app.config import ModelLocation, RuntimeConfig, ServerConfig, Settings
from llmcxr_app.engine.steps import decode_step
from llmcxr_app.studio.build import load_studio
from llmcxr_app.studio.facade import Studio
from llmcxr_app.ui import app as ui
from llmcxr_app.ui.compare import FAILED, columns_html, compare_plan
from llmcxr_app.ui.models import Models


def broken_studio(location, after: int) -> Studio:
    """The tiny model whose decode step fails from its `after`-th call on (a model crashing mid-answer)."""
    base = tiny_studio(location)
    calls = itertools.count()

    def step(*args):
        if next(calls) >= after:
            raise RuntimeError("simulated failure of the model")
        return decode_step(*args)

    return Studio.from_parts(base.llm, base.vqgan, location, step=step)


@pytest.fixture(scope="module")
def models(tiny_location, tiny_tokenizer, tmp_path_factory) -> dict[str, Studio]:
    llava = tmp_path_factory.mktemp("llava")
    write_tiny_llava(llava, tiny_tokenizer, "mistral")
    reader = load_studio(  # dispatched on the checkpoint's model_type: the adapter backend
        Settings(
            ModelLocation(str(llava), "", "", name="tiny reader"), RuntimeConfig(device="cpu", warmup=False)
        )
    )
    assert (reader.info.family, reader.info.can_draw) == ("adapter", False)
    return {
        "tiny-a": tiny_studio(replace(tiny_location, name="tiny A"), step_delay_s=0.003),
        "tiny-b": tiny_studio(replace(tiny_location, name="tiny B"), step_delay_s=0.003),
        "reader": reader,
        "broken": broken_studio(replace(tiny_location, name="tiny broken"), after=3),
    }


@pytest.fixture(scope="module")
def url(models, tmp_path_factory):
    examples = write_examples(tmp_path_factory.mktemp("examples"))
    with serve(models, examples["phantom_a"].parent) as address:
        yield address, examples


def chat(client, text="", file=None, mode="Auto", model="tiny-a", max_new_tokens=16):
    message = {"text": text, "files": [handle_file(str(file))] if file else []}
    return client.submit(message, mode, 1.0, 0.92, max_new_tokens, "1", 1, model, api_name="/chat")


def compare(client, text="", file=None, first="tiny-a", second="tiny-b", max_new_tokens=16):
    message = {"text": text, "files": [handle_file(str(file))] if file else []}
    return client.submit(message, first, second, 1.0, 0.92, max_new_tokens, "1", api_name="/compare")


def json_downloads(messages) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in files(messages) if p.endswith(".json")]


def columns(messages) -> dict[str, str]:
    """{model: its column's text} of the last comparison in a chat."""
    html = [t for r, t in texts(messages) if r == "assistant" and "class='compare'" in t][-1]
    found = re.findall(r"data-model='([^']+)'>.*?<div class='compare-text'>(.*?)</div></div>", html)
    return dict(found)


def titles(messages) -> list[str]:
    return [m["metadata"]["title"] for m in messages if (m.get("metadata") or {}).get("title")]


def test_one_model_has_no_picker_and_several_have_one(models):
    single = json.dumps(ui.build(models["tiny-a"], ServerConfig()).get_config_file(), default=str)
    several = json.dumps(ui.build(models, ServerConfig()).get_config_file(), default=str)
    assert "model-picker" not in single and '"/compare"' not in single and "compare" not in single
    assert "model-picker" in several and "compare-with" in several
    assert Models.of(models).label("reader") == "reader (adapter family)"


def test_the_picked_model_answers_and_its_details_say_so(url):
    address, examples = url
    client = Client(address, verbose=False, download_files=False)
    first = chat(client, "Is there an effusion?", file=examples["phantom_a"], model="tiny-b").result()[0]
    (record,) = json_downloads(first)
    assert record["provenance"]["model"] == "tiny B"
    assert titles(first)[-1].endswith("by tiny-b (token family)")
    # A follow-up to another model: the same X-ray, seen by that model, answered by it.
    again = chat(client, "And the heart?", model="tiny-a").result()[0]
    records = json_downloads(again)
    assert [r["provenance"]["model"] for r in records] == ["tiny B", "tiny A"]
    assert [r["provenance"]["task"] for r in records] == [protocol.TASK_VQA, protocol.TASK_VQA]
    assert titles(again)[-1].endswith("by tiny-a (token family)")


def test_a_model_that_cannot_draw_refuses_with_a_reason_and_keeps_the_chat(url):
    address, _ = url
    client = Client(address, verbose=False, download_files=False)
    kept = chat(client, "Hello", model="reader").result()[0]
    with pytest.raises(AppError, match="reader cannot draw X-rays: it is an adapter-family model"):
        chat(client, "Small right pneumothorax.", mode="Draw", model="reader").result()
    drawn = chat(client, "Small right pneumothorax.", mode="Draw", model="tiny-a").result()[0]
    assert drawn[: len(kept)] == kept  # the refusal lost nothing; another model draws
    assert any(r["provenance"]["task"] == protocol.TASK_DRAW for r in json_downloads(drawn))


def test_compare_streams_both_models_side_by_side_each_with_its_provenance(url):
    address, examples = url
    client = Client(address, verbose=False, download_files=False)
    job = compare(client, "Is there a pleural effusion?", file=examples["phantom_b"], second="reader")
    outs = list(job)
    final = job.outputs()[-1][0]
    both_running = [
        o for o in outs if not titles(o[0]) and all(t and "…" not in t for t in columns(o[0]).values())
    ]
    assert both_running, "the two answers did not stream at the same time"
    cols = columns(final)
    assert list(cols) == ["tiny-a", "reader"] and all(cols.values())
    html = [t for r, t in texts(final) if "class='compare'" in t][-1]
    assert "tiny-a (token family)" in html and "reader (adapter family)" in html
    records = json_downloads(final)
    assert [r["provenance"]["model"] for r in records] == ["tiny A", "tiny reader"]
    assert {r["request"]["question"] for r in records} == {"Is there a pleural effusion?"}
    assert [t.split(" · ")[0] for t in titles(final)] == ["Compare", "Compare"]
    assert titles(final)[0].endswith("by tiny-a (token family)")
    assert titles(final)[1].endswith("by reader (adapter family)")
    # No text: both describe the current X-ray.
    report = compare(client).result()[0]
    assert [r["provenance"]["task"] for r in json_downloads(report)[-2:]] == [protocol.TASK_REPORT] * 2


def test_one_model_failing_in_compare_leaves_the_other_answer_and_the_chat(url):
    address, examples = url
    client = Client(address, verbose=False, download_files=False)
    before = chat(client, "Hello", model="tiny-a").result()[0]
    final = compare(client, file=examples["phantom_a"], first="tiny-b", second="broken").result()[0]
    assert final[: len(before)] == before
    cols = columns(final)
    assert FAILED in cols["broken"] and cols["tiny-b"] and FAILED not in cols["tiny-b"]
    assert [r["provenance"]["model"] for r in json_downloads(final)[-1:]] == ["tiny B"]
    assert len(titles(final)) == len(titles(before)) + 1  # details for the answer that finished only
    with pytest.raises(AppError, match="two different models"):
        compare(client, "Why?", first="tiny-a", second="tiny-a").result()


def test_stop_stops_both_columns(url):
    address, examples = url
    client = Client(address, verbose=False, download_files=False)
    job = compare(client, "Tell me about this X-ray.", file=examples["phantom_a"], max_new_tokens=200)
    for out in job:
        cols = columns(out[0]) if any("class='compare'" in t for _, t in texts(out[0])) else {}
        if cols and all(t and "…" not in t for t in cols.values()):
            break
    stopped, _box = client.predict(api_name="/stop")
    job.cancel()
    assert all(t.endswith("(stopped)</span>") for t in columns(stopped).values()), columns(stopped)
    assert not titles(stopped)
    assert chat(client, "Again?", model="tiny-b").result()[0][-1]["role"] == "assistant"  # models released


def test_compare_plan_and_columns_escape_model_text():
    assert compare_plan("", True).task == protocol.TASK_REPORT
    assert compare_plan("Effusion?", True).task == protocol.TASK_VQA
    assert compare_plan("Hello", False).task == protocol.TASK_INSTRUCT
    from llmcxr_app.ui.compare import _Column

    html = columns_html([_Column("a", "a (token family)", text="<script>x</script>\nline")])
    assert "<script>" not in html and "&lt;script&gt;" in html and "<br>line" in html


def test_the_model_view_follows_the_family_of_the_model_that_prepared_the_xray(tmp_path):
    from dataclasses import replace

    from PIL import Image

    from llmcxr_app.imaging.images import load_image
    from llmcxr_app.studio.types import PreparedImage, StudioInfo
    from llmcxr_app.ui.panel import panel_updates
    from llmcxr_app.ui.sessions import CurrentXray

    Image.new("L", (64, 48), 90).save(tmp_path / "x.png")
    loaded = load_image(str(tmp_path / "x.png"), model_sizes=(32,))
    view = Image.new("RGB", (32, 32), 90)
    prepared = PreparedImage([], view, view.convert("L"), (0.0, 0.0, 48.0, 48.0), loaded)
    current = CurrentXray(loaded, prepared, chat_path="")
    token = StudioInfo("t", True, "cpu", "fp32", "h", 32, 4, 16, 64, "0")
    adapter = replace(token, family="adapter", can_draw=False, grid=0, codebook_size=0)
    model_in, recon = panel_updates(current, token)[4:6]
    assert model_in["label"] == "Model input (VQ-GAN)" and recon["visible"] and recon["value"] is not None
    model_in, recon = panel_updates(current, adapter)[4:6]
    assert model_in["label"] == "Vision tower input" and not recon["visible"] and recon["value"] is None

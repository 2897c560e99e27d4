"""The chat app through gradio_client against the launched server, plus its pure parts (routing, rendering)."""

from __future__ import annotations

import argparse
import json
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicom_corpus import SECRETS, make_dataset, pattern, to_bytes, to_stored
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError
from gradio_client.utils import Status
from PIL import Image
from ui_harness import files, serve, texts, tiny_studio, write_examples

from llmcxr_app import protocol
from llmcxr_app.cli_args import add_server_args, server_from_args
from llmcxr_app.config import ServerConfig
from llmcxr_app.imaging.exports import mark_box
from llmcxr_app.studio import selfcheck
from llmcxr_app.studio.facade import Studio, StudioInputError
from llmcxr_app.studio.guidance import NOTHING_TO_SWAP, SWAPPED_AS_TYPED
from llmcxr_app.ui import app as ui
from llmcxr_app.ui import draw as ui_draw
from llmcxr_app.ui import render as ui_render
from llmcxr_app.ui.chat import ChatApp
from llmcxr_app.ui.routing import findings_from_request, is_draw_request, route

# --- routing and rendering (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "text", "new", "has", "task", "arg"),
    [
        ("Auto", "", True, True, protocol.TASK_REPORT, ""),
        ("Auto", "Is there an effusion?", True, True, protocol.TASK_VQA, "Is there an effusion?"),
        ("Auto", "Is there an effusion?", False, True, protocol.TASK_VQA, "Is there an effusion?"),
        ("Auto", "What is a pneumothorax?", False, False, protocol.TASK_INSTRUCT, "What is a pneumothorax?"),
        ("Auto", "Describe this X-ray", False, True, protocol.TASK_REPORT, ""),
        (
            "Auto",
            "Draw a chest X-ray: Large left effusion.",
            False,
            True,
            protocol.TASK_DRAW,
            "Large left effusion.",
        ),
        (
            "Auto",
            "Create a report for this image",
            False,
            True,
            protocol.TASK_VQA,
            "Create a report for this image",
        ),
        ("Draw", "Small right pneumothorax.", False, False, protocol.TASK_DRAW, "Small right pneumothorax."),
        ("Report", "anything", False, True, protocol.TASK_REPORT, ""),
        ("Ask", "Describe this X-ray", False, True, protocol.TASK_VQA, "Describe this X-ray"),
        ("Ask", "Hello", False, False, protocol.TASK_INSTRUCT, "Hello"),
    ],
)
def test_route(mode, text, new, has, task, arg):
    plan = route(mode, text, new, has)
    assert (plan.task, plan.text) == (task, arg)


def test_route_refuses_an_empty_message():
    with pytest.raises(StudioInputError, match="empty"):
        route("Auto", "  ", False, True)


def test_findings_are_cut_from_draw_requests():
    assert (
        findings_from_request("Please generate a synthetic frontal chest x-ray with cardiomegaly")
        == "cardiomegaly"
    )
    assert findings_from_request("Large left effusion. Please draw the X-ray.") == "Large left effusion."
    assert findings_from_request("make me an xray showing bilateral opacities") == "bilateral opacities"
    assert not is_draw_request("Is the heart enlarged on this image?")


def test_seed_box_and_candidate_seeds():
    assert ui_render.parse_seed("  ") is None and ui_render.parse_seed(" 42 ") == 42
    for bad in ("abc", "1.5", "-1", str(2**31)):
        with pytest.raises(ValueError, match="seed"):
            ui_render.parse_seed(bad)
    assert ui_render.candidate_seeds(7, 3) == [7, 8, 9]
    assert ui_render.candidate_seeds(None, 2) == [None, None]


def test_a_single_disagreeing_drawing_points_to_several_candidates():
    asked = "Large right pleural effusion."
    wrong = selfcheck.compare(asked, "There are small bilateral pleural effusions.")
    right = selfcheck.compare(asked, "There is a large right pleural effusion.")
    assert not wrong.matches and right.matches
    hint = ui_draw.candidates_hint([wrong], 4)
    assert "up to 4 drawings" in hint and "Draw: candidates" in hint
    assert ui_draw.candidates_hint([right], 4) == ""  # it agrees: nothing to suggest
    assert ui_draw.candidates_hint([wrong, right], 4) == ""  # several drawn: the verdict names the best
    assert ui_draw.candidates_hint([wrong], 1) == ""  # the server allows one candidate only
    assert ui_draw.candidates_hint([], 4) == ""  # self-check off


def test_details_name_the_guidance_when_used_and_say_why_not_when_skipped():
    def details(guidance: float, **drawn) -> str:
        sampling = {"temperature": 1.0, "top_p": 0.92, "max_new_tokens": 512, "guidance": guidance}
        return ui_render.provenance_markdown({"sampling": sampling, **drawn}, {})

    assert "guid" not in details(1.0) and "guid" not in details(1.0, guided_away_from=None)
    line = "top-p 0.92 · max 512 tokens · guidance 2.5 (away from the other side, size and zone)"
    assert line in details(2.5, guided_away_from="swapped")
    assert "guidance 2 (away from a normal chest)" in details(2.0, guided_away_from="normal")
    skipped = details(1.0, guided_away_from=None, guidance_skipped=NOTHING_TO_SWAP)
    assert "max 512 tokens · unguided (no side, size or zone stated to guide by)" in skipped


def test_the_guidance_slider_starts_at_the_drawing_models_own(studio):
    def slider(models) -> dict:
        config = ui.build(models, ServerConfig()).get_config_file()
        props = [c["props"] for c in config["components"] if c.get("props", {}).get("label")]
        return next(p for p in props if p["label"] == ui_render.GUIDANCE_LABEL)

    assert slider(studio)["value"] == 1.0  # no llmcxr_draw_guidance in its config
    guided = Studio.from_parts(replace(studio.llm, draw_guidance=2.0), studio.vqgan, studio.location)
    assert slider(guided)["value"] == 2.0 and slider(guided)["maximum"] == 3.0
    assert slider({"a": studio, "b": guided})["value"] == 1.0  # the first model that draws
    bold = Studio.from_parts(replace(studio.llm, draw_guidance=4.5), studio.vqgan, studio.location)
    assert slider(bold)["value"] == slider(bold)["maximum"] == 4.5  # a declared scale stays reachable


def test_confidence_map_colours_follow_the_probabilities():
    grid = 16
    probs = np.zeros((grid, grid))
    probs[:, grid // 2 :] = 1.0  # right half certain, left half not
    fig = np.asarray(ui_render.confidence_map(Image.new("L", (32, 32), 128), probs.ravel().tolist(), grid))
    # Sample the plot area: the overlay's left and right halves must differ in colour (viridis 0 vs 1).
    h, w, _ = fig.shape
    row = fig[h // 2, : int(w * 0.7)].astype(int)
    left, right = row[int(len(row) * 0.2)], row[int(len(row) * 0.85)]
    assert np.abs(left - right).sum() > 100
    with pytest.raises(ValueError):
        ui_render.confidence_map(Image.new("L", (32, 32)), [0.5] * 10, grid)


def test_crop_overlay_dims_only_outside_the_crop():
    im = Image.new("L", (200, 100), 200)
    out = np.asarray(ui_render.crop_overlay(im, (50, 0, 150, 100)))
    assert out[50, 100].tolist() == [200, 200, 200]  # inside, untouched
    assert out[50, 10].max() < 100  # outside, dimmed


def test_launch_kwargs_keep_the_server_private():
    kw = ui.launch_kwargs(ServerConfig(max_file_size="5mb"))
    assert kw["share"] is False and kw["ssr_mode"] is False and kw["run_history"] is False
    assert kw["enable_monitoring"] is False and kw["max_file_size"] == "5mb"


# --- the launched app ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    return write_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def studio(tiny_location):
    # A 3 ms pause per token (a slower model) gives Stop time to land mid-answer.
    return tiny_studio(tiny_location, step_delay_s=0.003)


@pytest.fixture(scope="module")
def url(studio, examples):
    with serve(studio, examples["phantom_a"].parent) as address:
        yield address


def test_demo_model_is_labelled_everywhere(studio):
    demo_studio = Studio.from_parts(studio.llm, studio.vqgan, replace(studio.location, is_demo=True))
    blocks = ui.build(demo_studio, ServerConfig())
    page = json.dumps(blocks.get_config_file(), default=str)
    assert "demo" in blocks.title.lower() and page.count("DEMO MODEL") == 1  # one notice, in the header
    assert page.count(ui.DEMO_NOTE) == 1 and "demo-badge" not in page
    assert "demo" in ChatApp(demo_studio, ServerConfig()).tag  # download file names
    assert "demo model" in ui_render.provenance_title({"seed": 1, "is_demo": True}, {"total_s": 1.0})
    assert "demo" not in ChatApp(studio, ServerConfig()).tag


def send(client, text="", file=None, mode="Auto", max_new_tokens=16, seed="1", candidates=1, *drawing):
    """/chat as a script calls it; `drawing` (guidance, what it avoids) are the last inputs, left out by
    calls made before they existed."""
    message = {"text": text, "files": [handle_file(str(file))] if file else []}
    settings = (1.0, 0.92, max_new_tokens, seed, candidates, *drawing)
    return client.submit(message, mode, *settings, api_name="/chat")


def finish(job) -> tuple[list[dict], list]:
    """(final chat, panel values) of a /chat job; the panel (outputs 2..8) is sent once, when it changes."""
    outs = list(job)
    panel: list = [None] * 7
    for out in outs:
        for i, value in enumerate(out[2:9]):
            if isinstance(value, dict) and "value" in value:
                value = value["value"]
                panel[i] = value["path"] if isinstance(value, dict) and "path" in value else value
            elif not isinstance(value, dict):
                panel[i] = value
    return job.outputs()[-1][0], panel


def json_downloads(chat) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in files(chat) if p.endswith(".json")]


def test_model_events_share_one_gpu_slot_and_a_bounded_queue(studio, url):
    blocks = ui.build(studio, ServerConfig(queue_size=5, delete_cache_s=600, concurrency=2))
    model_events = [fn for fn in blocks.fns.values() if fn.api_name == "chat"]
    assert model_events and all(
        fn.concurrency_id == ui.GPU and fn.concurrency_limit == 2 for fn in model_events
    )
    assert blocks._queue.max_size == ui.QUEUE_BACKSTOP * 5 and blocks.delete_cache is None
    assert (
        Client(url, verbose=False, download_files=False).config["run_history"] is False
    )  # the launched server: no browser history


def test_answer_streams_token_by_token(url):
    client = Client(url, verbose=False, download_files=False)
    job = send(client, "What is a pleural effusion?", max_new_tokens=30)
    partials = []
    for out in job:
        answer = [t for role, t in texts(out[0]) if role == "assistant"]
        if answer and (not partials or answer[0] != partials[-1]):
            partials.append(answer[0])
    assert len(partials) >= 4, partials
    grown = [p for p in partials if not p.startswith("Details")]
    assert all(len(a) <= len(b) for a, b in zip(grown, grown[1:], strict=False))
    final = job.outputs()[-1][0]
    (record,) = json_downloads(final)
    assert record["provenance"]["task"] == protocol.TASK_INSTRUCT and record["provenance"]["seed"] == 1
    assert record["text"] == texts(final)[1][1]  # the JSON download holds the answer shown


def test_png_upload_gives_a_report_and_the_panel(url, examples):
    client = Client(url, verbose=False, download_files=False)
    chat, panel = finish(send(client, file=examples["phantom_a"]))
    summary = panel[2]
    assert chat[0]["role"] == "user" and chat[0]["content"][0]["type"] == "file"
    assert "PNG" in summary and "96 × 96" in summary
    (record,) = json_downloads(chat)
    assert record["provenance"]["task"] == protocol.TASK_REPORT
    # The follow-up question refers to the remembered image.
    chat = send(client, "Is the heart enlarged?").result()[0]
    assert [r["provenance"]["task"] for r in json_downloads(chat)] == [
        protocol.TASK_REPORT,
        protocol.TASK_VQA,
    ]


def test_dicom_upload_by_content_shows_window_and_histogram(url, examples, tmp_path):
    client = Client(url, verbose=False, download_files=False)
    bare = tmp_path / "IM0001"  # a DICOM exported without an extension: recognised by its content
    bare.write_bytes(examples["dicom"].read_bytes())
    chat, panel = finish(send(client, "Is there cardiomegaly?", file=bare))
    overview, summary, recon, hist = panel[1], panel[2], panel[5], panel[6]
    assert "DICOM" in summary and "Display window" in summary and "64 × 48" in summary
    assert "centre square" in summary  # the non-square film is cropped, and the panel says so
    assert Path(hist).exists() and Path(overview).exists() and Path(recon).exists()
    dump = json.dumps([chat, panel], default=str) + "".join(
        Path(p).read_text() for p in files(chat) if p.endswith(".json")
    )
    assert not [s for s in SECRETS if s in dump], "patient identifiers leaked into the UI"


def test_errors_reach_the_client_and_the_conversation_is_kept(url, tmp_path):
    client = Client(url, verbose=False, download_files=False)
    first = send(client, "Hello there", max_new_tokens=16).result()[0]
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 not an x-ray")
    with pytest.raises(AppError, match="PDF document, not an image"):
        send(client, "Is this normal?", file=pdf).result()
    with pytest.raises(AppError, match="empty"):
        send(client, "").result()
    with pytest.raises(AppError, match="seed"):
        send(client, "Hi", seed="lots").result()
    after = send(client, "And now?", max_new_tokens=16).result()[0]
    assert after[: len(first)] == first  # earlier turns intact, failed ones not added
    assert [t for r, t in texts(after) if r == "user"] == ["Hello there", "And now?"]


def test_two_clients_conversations_stay_apart(url, examples):
    a, b = Client(url, verbose=False, download_files=False), Client(url, verbose=False, download_files=False)
    send(a, "Is there an effusion?", file=examples["phantom_b"]).result()
    chat_b = send(b, "What is a chest X-ray?").result()[0]
    assert [t for r, t in texts(chat_b) if r == "user"] == ["What is a chest X-ray?"]
    assert not any(m["content"][0].get("type") == "file" for m in chat_b if m["role"] == "user")
    assert [r["provenance"]["task"] for r in json_downloads(chat_b)] == [protocol.TASK_INSTRUCT]
    # a still has its image: its follow-up is a VQA; b's follow-up stays an instruction
    chat_a = send(a, "Any pneumothorax?").result()[0]
    assert [r["provenance"]["task"] for r in json_downloads(chat_a)][-1] == protocol.TASK_VQA
    a.predict(api_name="/forget")
    chat_a = send(a, "Any pneumothorax?").result()[0]
    assert [r["provenance"]["task"] for r in json_downloads(chat_a)][-1] == protocol.TASK_INSTRUCT


def test_draw_returns_a_marked_image_with_exports(url):
    client = Client(url, verbose=False, download_files=False)
    job = send(client, "Draw a chest X-ray: Large left pleural effusion.", seed="5")
    outs = list(job)
    previews = {p for out in outs for p in files(out[0]) if "preview" in Path(p).name}
    assert len(previews) >= 3  # the picture sharpened row by row in the chat
    chat = job.outputs()[-1][0]
    paths = files(chat)
    shown = Image.open(next(p for p in paths if "synthetic" in Path(p).name and p.endswith(".png")))
    assert shown.size == (ui_render.DISPLAY_SIDE, ui_render.DISPLAY_SIDE)
    left, top, right, bottom = mark_box(shown)
    mark = np.asarray(shown)[top:bottom, left:right]
    assert (mark == 0).mean() > 0.5 and mark.max() == 255  # the SYNTHETIC mark (white on black) is burned in
    (record,) = json_downloads(chat)
    assert len(record["image_codes"]) == 256 and record["provenance"]["seed"] == 5
    check = record["provenance"]["self_check"]  # the model read its drawing back (selfcheck.py)
    assert check["asked"] == ["effusion"] and isinstance(check["read_back"], str)
    assert check["agrees"] == (
        not check["missing"] and not check["extra"] and not check["attributes_differing"]
    )
    assert any(
        "Self-check (the model reading its own drawing)" in t for r, t in texts(chat) if r == "assistant"
    )
    hinted = any("Draw: candidates slider" in t for r, t in texts(chat) if r == "assistant")
    assert hinted == (not check["agrees"])  # a disagreeing single drawing points to several candidates
    # The chat says what the labeler read; this checkpoint (no llmcxr_draw_prompt) got the text as typed.
    prov = record["provenance"]
    # A call without the drawing settings: the checkpoint's own guidance (none declared here: 1).
    assert prov["sampling"]["guidance"] == 1.0 and prov["guided_away_from"] is None
    assert prov["draw_prompt"] == "verbatim" and prov["model_findings"] is None
    assert prov["read_as"] == "large left pleural effusion"
    note = "Read as (for the self-check): large left pleural effusion."
    assert any(note in t for r, t in texts(chat) if r == "assistant")
    dcm = pydicom.dcmread(next(p for p in paths if p.endswith(".dcm")))
    assert str(dcm.PatientName) == "SYNTHETIC^PHANTOM" and dcm.BurnedInAnnotation == "YES"
    titles = [m["metadata"]["title"] for m in chat if m.get("metadata")]
    assert any(t.startswith("Confidence map") for t in titles)


def test_guidance_reaches_the_drawing_and_its_record(url):
    client = Client(url, verbose=False, download_files=False)
    request = "Draw a chest X-ray: Large left pleural effusion."
    drawings = [(1,), (3,), (3, "normal"), (3, None)]  # None: a caller that does not send what it avoids
    records = [
        json_downloads(finish(send(client, request, None, "Draw", 16, "5", 1, *d))[0])[-1] for d in drawings
    ]
    plain, swapped, normal, unsaid = (r["provenance"] for r in records)
    assert plain["sampling"]["guidance"] == 1.0 and plain["guidance_negative"] is None
    assert swapped["sampling"]["guidance"] == 3.0 and swapped["guided_away_from"] == "swapped"
    assert swapped["guidance_negative"] == SWAPPED_AS_TYPED  # this checkpoint draws the text as typed
    assert normal["guided_away_from"] == "normal" and "No pleural effusion" in normal["guidance_negative"]
    assert unsaid["guided_away_from"] == "swapped" and records[3]["image_codes"] == records[1]["image_codes"]
    assert len({tuple(r["image_codes"]) for r in records[:3]}) == 3  # same seed, guided elsewhere


def test_candidates_share_one_details_panel_and_one_zip(url):
    client = Client(url, verbose=False, download_files=False)
    chat = send(client, "Draw a chest X-ray: Small right pneumothorax.", mode="Draw", seed="7", candidates=3)
    chat = chat.result()[0]
    titles = [m["metadata"]["title"] for m in chat if m.get("metadata")]
    assert len([t for t in titles if "Details & provenance" in t]) == 1
    assert len([t for t in titles if t.startswith("Confidence map")]) == 1
    (archive,) = [p for p in files(chat) if p.endswith(".zip")]
    assert not [p for p in files(chat) if p.endswith((".dcm", ".json"))]  # all of them are in the zip
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        records = [json.loads(zf.read(n)) for n in names if n.endswith(".json")]
    assert sorted(Path(n).suffix for n in names) == [".dcm"] * 3 + [".json"] * 3 + [".png"] * 3
    assert [r["provenance"]["seed"] for r in records] == [7, 8, 9]
    answer = " ".join(t for r, t in texts(chat) if r == "assistant")
    for i, record in enumerate(records):  # each verdict in full in the text (grid captions are cut)
        check = record["provenance"]["self_check"]
        assert f"**{i + 1}** (seed {7 + i})" in answer and ("agrees" in answer or "misses" in answer)
        assert check["read_back"] in answer


PASTED = (
    "Findings: Heart size is normal. There is a small left pleural effusion with adjacent atelectasis. "
    "No pneumothorax."
)


def test_pasted_findings_without_an_xray_are_drawn_and_say_so(url):
    client = Client(url, verbose=False, download_files=False)
    chat = send(client, PASTED, seed="3").result()[0]
    (record,) = json_downloads(chat)
    assert record["provenance"]["task"] == protocol.TASK_DRAW and len(record["image_codes"]) == 256
    assert record["provenance"]["self_check"]["asked"] == ["effusion"]  # the labeler read the pasted report
    labelled = [m for m in chat if (m.get("metadata") or {}).get("title", "").startswith("Mode: Draw (auto)")]
    assert len(labelled) == 1  # the answer names the mode it ran in
    assert [o["value"] for o in chat[-1]["options"]] == ["Redo as Ask"]  # no X-ray: no Report redo


def test_pasted_findings_with_an_xray_ask_which_is_meant(url, examples):
    client = Client(url, verbose=False, download_files=False)
    first = send(client, file=examples["phantom_a"]).result()[0]
    labelled = [
        m for m in first if (m.get("metadata") or {}).get("title", "").startswith("Mode: Report (auto)")
    ]
    assert labelled and not first[-1].get("options")  # no text: nothing to draw or ask in a redo
    asked = send(client, "Is there an effusion?").result()[0]
    assert [o["value"] for o in asked[-1]["options"]] == ["Redo as Draw", "Redo as Report"]
    chat = send(client, PASTED).result()[0]
    question = chat[-1]
    assert question["role"] == "assistant" and "findings report" in texts([question])[0][1]
    assert [o["value"] for o in question["options"]] == ["Draw these findings", "Ask about the current X-ray"]
    assert len(json_downloads(chat)) == len(json_downloads(asked))  # no model answer was generated


def test_draws_without_self_check_when_the_server_turns_it_off(studio, examples):
    with serve(studio, examples["phantom_a"].parent, draw_self_check=False) as address:
        client = Client(address, verbose=False, download_files=False)
        chat = send(client, "Draw a chest X-ray: Cardiomegaly.").result()[0]
        (record,) = json_downloads(chat)  # read while the server runs: closing it deletes its files
    assert len(record["image_codes"]) == 256 and "self_check" not in record["provenance"]
    assert not any("Self-check" in t for _, t in texts(chat))


def test_stop_keeps_the_partial_answer(url):
    client = Client(url, verbose=False, download_files=False)
    job = send(client, "Tell me about chest X-rays.", max_new_tokens=150, seed="1")
    seen = threading.Event()
    for out in job:
        if any(r == "assistant" and t for r, t in texts(out[0])):
            seen.set()
            break
    assert seen.is_set()
    chat, _box = client.predict(api_name="/stop")
    job.cancel()
    answer = [t for r, t in texts(chat) if r == "assistant"]
    assert answer and answer[-1].endswith("_(stopped)_")
    assert not any(m.get("metadata") for m in chat)  # no provenance: the answer never finished
    # The model was released: the next request runs.
    assert send(client, "Again?", max_new_tokens=16).result()[0][-1]["role"] == "assistant"


# --- files, sessions and capacity (ui/sweeper.py, ui/sessions.py, the queue) -------------------------------


def wait_for(job, *codes: Status, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while job.status().code not in codes:
        assert time.monotonic() < deadline, f"job stayed {job.status().code}"
        time.sleep(0.02)


def long_draw(client):
    """A request that holds the model for seconds: four drawings, each read back."""
    return send(client, "Draw a chest X-ray: Large left pleural effusion.", mode="Draw", candidates=4)


def test_the_raw_upload_is_not_served_once_answered(url, examples):
    # A DICOM with (fake) identifiers, other than the examples (Gradio keeps those: same bytes, same path).
    data = to_bytes(make_dataset(to_stored(pattern(), 0, 1023, "uint16"), 10))
    (raw,) = httpx.post(f"{url}gradio_api/upload", files={"files": ("chest.dcm", data)}).json()
    link = f"{url}gradio_api/file={raw}"
    assert httpx.get(link).content == data  # served while it waits to be sent
    client = Client(url, verbose=False, download_files=False)
    chat = send(client, "Is there cardiomegaly?", file=raw).result()[0]  # re-sends the same bytes: same path
    assert json_downloads(chat) and httpx.get(link).status_code in (403, 404) and not Path(raw).exists()


def test_sessions_per_client_are_capped(studio, examples):
    with serve(studio, examples["phantom_a"].parent, max_sessions_per_client=1, concurrency=2) as address:
        a, b = (Client(address, verbose=False, download_files=False) for _ in range(2))
        send(a, "Hello there").result()
        busy = long_draw(a)
        wait_for(busy, Status.ITERATING)
        with pytest.raises(AppError, match=r"Too many conversations from your address are busy.*limit is 1"):
            send(b, "Hi").result()
        a.predict(api_name="/stop")
        busy.cancel()
        assert [t for r, t in texts(send(b, "Hi").result()[0]) if r == "user"] == ["Hi"]  # a was evicted
        # a's conversation was closed to make room: its next message starts a new one
        assert [t for r, t in texts(send(a, "Again").result()[0]) if r == "user"] == ["Again"]


def test_a_full_queue_refuses_with_a_clear_message(studio, examples):
    with serve(studio, examples["phantom_a"].parent, queue_size=1) as address:
        first, second, third = (Client(address, verbose=False, download_files=False) for _ in range(3))
        running = long_draw(first)
        wait_for(running, Status.ITERATING)
        waiting = send(second, "What is a pleural effusion?")
        wait_for(waiting, Status.IN_QUEUE)
        with pytest.raises(
            ValidationError, match=r"The model is busy: 1 requests are already waiting.*send it again"
        ):
            send(third, "Hi").result()
        first.predict(api_name="/stop")
        running.cancel()
        assert texts(waiting.result()[0])[-1][0] == "assistant"
        assert texts(send(third, "Hi").result()[0])[0] == ("user", "Hi")  # room again: answered


def test_server_limits_come_from_flags_then_the_environment(monkeypatch):
    parser = argparse.ArgumentParser()
    add_server_args(parser)
    monkeypatch.setenv("LLMCXR_CONCURRENCY", "2")
    monkeypatch.setenv("LLMCXR_TTL", "60")
    server = server_from_args(parser.parse_args(["--ttl", "120", "--queue-size", "3"]), ServerConfig())
    assert (server.delete_cache_s, server.queue_size, server.concurrency) == (120.0, 3, 2)
    assert server.max_sessions_per_client == ServerConfig().max_sessions_per_client
    with pytest.raises(ValueError, match=r"TTL must be > 0.*--ttl"):
        server_from_args(parser.parse_args(["--ttl", "0"]), ServerConfig())
    with pytest.raises(ValueError, match=r"--queue-size / LLMCXR_QUEUE_SIZE = 'many' is not a number"):
        server_from_args(parser.parse_args(["--queue-size", "many"]), ServerConfig())


def test_uploads_per_client_are_capped(studio, examples):
    with serve(studio, examples["phantom_a"].parent, max_uploads_per_client=2) as address:
        upload = f"{address}gradio_api/upload"
        for i in range(2):
            response = httpx.post(upload, files={"files": (f"x{i}.png", examples["phantom_a"].read_bytes())})
            assert response.status_code == 200
        refused = httpx.post(upload, files={"files": ("x2.png", examples["phantom_a"].read_bytes())})
        assert (
            refused.status_code == 429
            and "Too many uploads from your address: at most 2 in 1 hour" in refused.text
        )
        client = Client(address, verbose=False, download_files=False)
        assert texts(send(client, "Hi").result()[0])[0] == ("user", "Hi")  # the rest of the app still answers


def test_behind_a_space_proxy_caps_count_the_forwarded_client(studio, examples, monkeypatch):
    import app

    seen = {}

    class Launched:
        def launch(self, **kwargs):
            pass

    monkeypatch.setenv("SPACE_ID", "org/space")
    monkeypatch.setattr(app, "load_studio", lambda settings, **kw: object())  # app.py loads through it
    monkeypatch.setattr(app.ui, "build", lambda studio, server: seen.update(server=server) or Launched())
    app.main([])
    assert seen["server"].trust_forwarded_for is True
    monkeypatch.undo()  # the real build again
    with serve(
        studio, examples["phantom_a"].parent, max_uploads_per_client=1, trust_forwarded_for=True
    ) as url:
        data = {"files": ("x.png", examples["phantom_a"].read_bytes())}

        def upload(client: str) -> int:
            forwarded = {"X-Forwarded-For": f"{client}, 10.0.0.7"}  # the client, then a proxy hop
            return httpx.post(f"{url}gradio_api/upload", files=data, headers=forwarded).status_code

        assert [upload("203.0.113.5"), upload("203.0.113.5"), upload("198.51.100.9")] == [200, 429, 200]


def test_downloads_record_question_mode_file_and_hashes(studio, url, examples, tmp_path, caplog):
    """Issue 19.6: the answer JSON holds the question, the mode, the X-ray file's name and SHA-256, and the
    model's hashes; the file name (it may identify a patient) reaches the user's download, not the log."""
    import hashlib
    import logging

    upload = tmp_path / "PATIENT_X7Q_chest.dcm"
    upload.write_bytes(examples["dicom"].read_bytes())
    client = Client(url, verbose=False, download_files=False)
    with caplog.at_level(logging.DEBUG):
        chat, _ = finish(send(client, "Is there cardiomegaly?", file=upload))
    (record,) = json_downloads(chat)
    assert record["request"] == {
        "mode": "Ask (auto)",
        "question": "Is there cardiomegaly?",
        "input_file": upload.name,
        "input_sha256": hashlib.sha256(upload.read_bytes()).hexdigest(),
    }
    info, prov = studio.info, record["provenance"]
    assert (prov["llm_hash"], prov["vqgan_hash"], prov["weight_hash"]) == (
        info.llm_hash,
        info.vqgan_hash,
        info.weight_hash,
    )
    assert len({info.llm_hash, info.vqgan_hash, info.weight_hash}) == 3 and all(
        len(h) == 12 for h in (info.llm_hash, info.vqgan_hash)
    )
    assert "PATIENT_X7Q" not in caplog.text
    txt = next(Path(p).read_text() for p in files(chat) if p.endswith(".txt"))
    assert "question: Is there cardiomegaly?" in txt and f"input_file: {upload.name}" in txt
    # A drawing records its findings and no X-ray file; a report names the current X-ray.
    chat = send(client, "Pleural effusion on the left.", mode="Draw").result()[0]
    assert json_downloads(chat)[-1]["request"] == {
        "mode": "Draw",
        "findings": "Pleural effusion on the left.",
    }
    chat = send(client, mode="Report").result()[0]
    assert json_downloads(chat)[-1]["request"]["input_file"] == upload.name


def test_app_start_up_logs_its_progress_and_answers_the_first_request(tiny_location):
    """Issue 19.7: app.py logs loading, warm-up and "Ready" with the URL in order, prints no share hint, and
    answers the first request (which waits for the background warm-up if it still runs). Not timed."""
    from llmcxr_app.bench.startup import MARKS, start_once

    flags = ["--llm", tiny_location.llm, "--vqgan-config", tiny_location.vqgan_config]
    run = start_once([*flags, "--vqgan-ckpt", tiny_location.vqgan_ckpt], timeout_s=240)
    lines = {key: next(i for i, line in enumerate(run.log) if text in line) for key, text in MARKS.items()}
    assert lines["loading_s"] < lines["loaded_s"] < lines["warm_start_s"] < lines["ready_s"]
    assert lines["warm_start_s"] < lines["warm_s"]
    ready = run.log[lines["ready_s"]]
    assert "http://127.0.0.1:" in ready and run.page_s is not None
    assert not [line for line in run.log if "share=True" in line or "Running on local URL" in line]
    assert run.first_answer_s is not None and run.answer  # the first request was answered


def test_a_request_during_the_warm_up_waits_for_it_with_a_note(tiny_location, examples):
    """The first request after start-up never runs the warm-up itself: it waits, and the user is told why."""
    from llmcxr_app.ui.chat import WARMING_UP

    studio = tiny_studio(tiny_location)
    release = threading.Event()
    studio.warm_up = lambda fast: release.wait(60) and {"mode": "eager"}  # a warm-up that takes its time
    studio.start_warm_up(None)
    with serve(studio, examples["phantom_a"].parent) as address:
        client = Client(address, verbose=False, download_files=False)
        job = send(client, "Is the heart enlarged?")
        time.sleep(2)  # the request is in: with the warm-up still running it must wait
        assert not job.done()
        release.set()
        chat = job.result()[0]
        updates = job.communicator.updates  # every status the client received, the "log" ones among them
        received = [updates.get_nowait() for _ in range(updates.qsize())]
        notes = [u.log for u in received if getattr(u, "log", None)]
    assert (WARMING_UP, "info") in notes  # the user was told why the answer waits
    assert texts(chat)[-1][0] == "assistant" and studio.ready.is_set()


def test_the_reading_note_says_whether_the_model_drew_from_the_reading():
    from llmcxr_app.ui.draw import reading_note

    canonical = reading_note("Big R effusion + cardiomeg, ?PTX", "canonical")
    assert canonical.startswith(
        "Read as: cardiomegaly, large right pleural effusion; hedged, not drawn: pneumothorax."
    )
    assert "draws from that reading" in canonical
    verbatim = reading_note("Possible left pneumothorax.", "verbatim")
    assert verbatim == (
        "Read as (for the self-check): no finding the model draws (a normal chest); hedged, not drawn: "
        "pneumothorax."
    )


def test_an_answer_says_which_template_question_the_model_was_asked():
    from llmcxr_app.ui.answers import with_reading

    assert with_reading("Left.", {"asked": None}) == "Left."
    noted = with_reading("Left.", {"asked": "Which side is the pneumothorax on?"})
    assert noted.startswith("Left.\n\n") and '"Which side is the pneumothorax on?"' in noted


def test_an_answer_turned_round_says_what_the_model_replied():
    from llmcxr_app.ui.answers import with_reading

    prov = {"asked": "Is there cardiomegaly?", "opposite": True, "model_answer": "No."}
    assert with_reading("Yes.", prov).endswith(
        'opposite of "Is there cardiomegaly?", to which the model replied "No."._'
    )
    unclear = {**prov, "model_answer": "Enlarged."}
    assert "model's reply to" in with_reading("Enlarged.", unclear)

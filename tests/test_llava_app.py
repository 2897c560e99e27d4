"""The web app serving an adapter-family checkpoint (tiny random LLaVA) through the real Gradio server."""

from __future__ import annotations

import json
from pathlib import Path

import gradio_client
import pytest
from gradio_client.exceptions import AppError
from llava_tiny import write_tiny_llava
from test_ui import send
from ui_harness import files, serve, texts, write_examples

from llmcxr_app import protocol
from llmcxr_app.config import ModelLocation, RuntimeConfig, Settings
from llmcxr_app.studio.build import load_studio


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_tokenizer):
    llava = tmp_path_factory.mktemp("llava")
    write_tiny_llava(llava, tiny_tokenizer, "mistral")
    location = ModelLocation(str(llava), "", "", name="tiny llava")
    studio = load_studio(Settings(model=location, runtime=RuntimeConfig(device="cpu", warmup=False)))
    examples = write_examples(tmp_path_factory.mktemp("examples"))
    with serve(studio, examples["phantom_a"].parent) as address:
        yield address, examples


def test_report_and_question_then_draw_refused(url):
    address, examples = url
    client = gradio_client.Client(address, verbose=False, download_files=False)
    chat = send(client, file=examples["phantom_a"], max_new_tokens=16).result()[0]
    chat = send(client, "Is the heart enlarged?", max_new_tokens=16).result()[0]
    records = [json.loads(Path(p).read_text()) for p in files(chat) if p.endswith(".json")]
    assert [r["provenance"]["task"] for r in records] == [protocol.TASK_REPORT, protocol.TASK_VQA]
    assert {r["provenance"]["family"] for r in records} == {"adapter"}
    with pytest.raises(AppError, match="cannot draw.*--weights demo"):  # the UI's input-error path
        send(client, "Right pleural effusion.", mode="Draw").result()
    chat = send(client, "What is a pneumothorax?", max_new_tokens=16).result()[0]  # still serving
    assert texts(chat)[-1][0] == "assistant"

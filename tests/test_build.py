"""studio/build.py: the backend is chosen from the checkpoint's config.json, never from its path."""

import json
from dataclasses import replace

import pytest

from llmcxr_app.config import DEMO_MODEL, RuntimeConfig, Settings
from llmcxr_app.loading.files import checkpoint_model_type
from llmcxr_app.studio import build


def test_model_type_is_read_from_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    assert checkpoint_model_type(str(tmp_path)) == "llava"
    assert checkpoint_model_type(DEMO_MODEL.llm) == "gpt_neox"
    assert checkpoint_model_type(str(tmp_path / "missing")) == ""


def test_an_unserved_model_type_is_refused_naming_the_served_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    settings = Settings(model=replace(DEMO_MODEL, llm=str(tmp_path)))
    with pytest.raises(ValueError, match="'mamba' is not served.*gpt_neox"):
        build.load_studio(settings)


def test_the_demo_model_loads_as_the_token_family():
    runtime = RuntimeConfig(device="cpu", fast_path=False, warmup=False)
    studio = build.load_studio(Settings(model=DEMO_MODEL, runtime=runtime))
    assert studio.info.family == "token" and studio.info.can_draw
    assert studio.info.model_name == DEMO_MODEL.name

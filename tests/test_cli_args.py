"""cli_args.py: flags, environment variables and their precedence; the thread count reaches torch."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
import torch

from llmcxr_app.cli_args import add_weight_args, settings_from_args
from llmcxr_app.config import ENV_DEVICE, ENV_THREADS, Settings
from llmcxr_app.studio.facade import Studio


def parse(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_weight_args(parser)
    return settings_from_args(parser.parse_args(argv))


def test_defaults(monkeypatch):
    for env in (ENV_THREADS, ENV_DEVICE):
        monkeypatch.delenv(env, raising=False)
    runtime = parse([]).runtime
    assert (runtime.device, runtime.cpu_threads, runtime.fast_path) == ("auto", 0, True)


def test_flag_beats_environment(monkeypatch):
    monkeypatch.setenv(ENV_THREADS, "3")
    assert parse([]).runtime.cpu_threads == 3
    assert parse(["--threads", "1"]).runtime.cpu_threads == 1


@pytest.mark.parametrize("value", ["-2", "two", "1.5"])
def test_bad_thread_count_names_the_setting(monkeypatch, value):
    monkeypatch.setenv(ENV_THREADS, value)
    with pytest.raises(ValueError, match=ENV_THREADS):
        parse([])


def test_studio_applies_the_thread_count(tiny_location):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    settings = Settings(model=tiny_location)
    runtime = replace(settings.runtime, device="cpu", fast_path=False, warmup=False, cpu_threads=target)
    try:
        Studio.from_settings(replace(settings, runtime=runtime))
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(before)


def _weights_args(*argv: str):
    import argparse

    from llmcxr_app.cli_args import add_weight_args

    parser = argparse.ArgumentParser()
    add_weight_args(parser)
    return parser.parse_args(list(argv))


def test_weights_name_selects_a_registered_model_and_a_path_flag_overrides_it(tmp_path):
    from llmcxr_app.cli_args import settings_from_args
    from llmcxr_app.config import DEMO_ADAPTER_MODEL, DEMO_MODEL

    assert settings_from_args(_weights_args("--weights", "demo-adapter")).model == DEMO_ADAPTER_MODEL
    model = settings_from_args(_weights_args("--weights", "demo", "--llm", str(tmp_path))).model
    assert model.llm == str(tmp_path) and model.vqgan_ckpt == DEMO_MODEL.vqgan_ckpt


def test_unknown_weights_name_is_an_error_listing_the_names():
    import pytest

    from llmcxr_app.cli_args import settings_from_args

    with pytest.raises(ValueError, match="demo-adapter"):
        settings_from_args(_weights_args("--weights", "dmeo"))


def test_parse_models_takes_names_and_directories_in_order(tmp_path, monkeypatch):
    import pytest

    from llmcxr_app.cli_args import parse_models
    from llmcxr_app.config import DEMO_ADAPTER_MODEL, DEMO_MODEL, ENV_VQGAN_CKPT, ENV_VQGAN_CONFIG

    monkeypatch.delenv(ENV_VQGAN_CONFIG, raising=False)
    monkeypatch.delenv(ENV_VQGAN_CKPT, raising=False)
    assert parse_models(" demo-adapter , demo") == [DEMO_ADAPTER_MODEL, DEMO_MODEL]
    (custom,) = parse_models(str(tmp_path))
    assert custom.llm == str(tmp_path) and custom.vqgan_config == "" and not custom.is_demo
    for bad, why in (("", "at least one"), ("demo,demo", "twice"), ("nonesuch", "Unknown model")):
        with pytest.raises(ValueError, match=why):
            parse_models(bad)

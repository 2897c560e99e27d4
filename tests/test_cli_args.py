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

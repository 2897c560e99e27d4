"""bench.py in its CI smoke mode (tiny random model, CPU). No timing assertions: only shape and agreement."""

from __future__ import annotations

import json

import pytest
import torch

from llmcxr_app import config as cfg
from llmcxr_app.bench import benchmark as bench
from llmcxr_app.bench import report as report_mod


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the bench sets --threads for the whole process


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["--shape", "tiny", "--repeats", "1", "--threads", "1", "--new-tokens", "12", "--device", "cpu"]
    assert bench.main([*argv, "--paths", "hf,fast", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_report_keys(report):
    for key in (
        "date",
        "command",
        "device",
        "device_name",
        "torch",
        "transformers",
        "shape",
        "quantization",
        "parameters",
        "prompt_tokens",
        "new_tokens",
        "image_tokens",
        "results",
        "targets",
    ):
        assert key in report, key
    assert report["command"].startswith("python -m llmcxr_app.bench --shape tiny")
    assert report["device"] == "cpu" and report["shape"] == "tiny" and report["quantization"] == "fp32"
    assert report["image_tokens"] == 256 and report["new_tokens"] == 12
    assert report["prompt_tokens"]["image"] > 256  # the image prompt holds the 256 image ids
    assert set(report["results"]) == {"hf", "fast"}
    for r in report["results"].values():
        for key in (
            "mode",
            "warmup_s",
            "compile_s",
            "first_token_s",
            "text_tok_s",
            "text_tokens",
            "draw_s",
            "peak_bytes",
        ):
            assert key in r, key
        assert r["first_token_s"] > 0 and r["text_tok_s"] > 0 and r["draw_s"] > 0
        assert r["text_tokens"] == 12 and r["peak_bytes"] > 0
    assert report["results"]["fast"]["mode"] == "eager"  # CPU default (measured fastest there)
    assert report["results"]["fast"]["cache_pool_bytes"] == 0  # eager decoding pools no StaticCache
    assert report["results"]["hf"]["cache_pool_bytes"] is None
    assert all(r["allocated_after_warmup_bytes"] is None for r in report["results"].values())  # CUDA only
    model_bytes = report["memory"]
    assert model_bytes["llm_bytes"] > 0 and model_bytes["vqgan_bytes"] > 0
    assert report["targets"] == []  # targets apply to the demo model (CPU) or official shapes in nf4 (GPU)


def test_paths_agree_with_hf_generate(report):
    """Greedy, same constraints: our loops and HF generate pick the same ids (text and image)."""
    for path in ("hf", "fast"):
        assert report["results"][path]["ids_match_hf"] == {"text": True, "draw": True}, path
        for kind in ("text", "draw"):
            assert report["results"][path]["ids_vs_hf"][kind]["first_difference"] is None, (path, kind)


def test_targets_are_judged_for_the_demo_shape():
    fast = {"first_token_s": 0.2, "draw_s": 12.0}
    report = {"shape": "demo-random", "quantization": "fp32", "results": {"fast": fast}}
    targets = {t["name"]: t["met"] for t in report_mod.targets(report, torch.device("cpu"))}
    assert targets == {"first_token_s": True, "draw_s": False}


def test_missing_demo_weights_message(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, "DEMO_LLM_DIR", tmp_path / "nothing")
    with pytest.raises(SystemExit, match="demo-random"):
        bench.main(["--weights", "demo", "--device", "cpu"])


def test_unknown_path_is_refused():
    with pytest.raises(SystemExit):
        bench.main(["--shape", "tiny", "--paths", "hf,turbo"])

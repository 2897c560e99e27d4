"""demo/evaluate/side_margin.py: teacher-forced log-probabilities checked against transformers' own loss,
the margin's arithmetic, and the command end to end on the shipped demo model."""

from __future__ import annotations

import json

import pytest
import torch

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_DIR, RuntimeConfig, Settings
from llmcxr_app.demo.evaluate import side_margin
from llmcxr_app.demo.evaluate.evaluation import demo_location
from llmcxr_app.studio.facade import Studio


@pytest.fixture(scope="module")
def studio() -> Studio:
    runtime = RuntimeConfig(device="cpu", fast_path=False, warmup=False)
    return Studio.from_settings(Settings(model=demo_location(DEMO_DIR), runtime=runtime))


def test_code_logprobs_match_the_models_own_loss_over_the_image_ids(studio):
    tokenizer, model = studio.llm.tokenizer, studio.llm.model
    n_embed = studio.vqgan.n_embed
    codes = torch.randint(0, n_embed, (studio.vqgan.grid_tokens,), generator=torch.Generator().manual_seed(0))
    text = "Large right pleural effusion."
    logp = side_margin.code_logprobs(model, tokenizer, text, codes.tolist(), n_embed)
    assert logp.shape == (len(codes),) and bool((logp <= 0).all())
    ids, n_prompt = protocol.build_training_ids(
        tokenizer,
        protocol.REPORT_TO_CXR_INSTRUCTIONS[0],
        input_text=text,
        response_codes=codes.tolist(),
        codebook_size=n_embed,
        grid_tokens=len(codes),
    )
    x = torch.tensor([ids])
    labels = torch.full_like(x, -100)
    first = n_prompt + 1  # the image ids follow the opening "<"
    labels[0, first : first + len(codes)] = x[0, first : first + len(codes)]
    assert torch.equal(labels[0, first : first + len(codes)] - len(tokenizer), codes)
    with torch.no_grad():
        loss = model(input_ids=x, labels=labels).loss
    torch.testing.assert_close(-logp.mean(), loss.float(), atol=1e-4, rtol=1e-4)


def test_margin_sums_the_difference_over_the_cells_and_everywhere():
    a = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    b = torch.tensor([-2.0, -2.0, -1.0, -4.5])
    m = side_margin.margin(a, b, [0, 3])
    assert (m.focus, m.all, m.cells) == (pytest.approx(1.5), pytest.approx(-0.5), 2)
    assert side_margin.margin(a, b, []).focus == 0.0
    assert side_margin.margin(b, a, [0, 3]).focus == pytest.approx(-1.5)


def test_the_command_scores_one_sided_validation_phantoms(tmp_path, capsys):
    out = tmp_path / "margin.json"
    assert side_margin.main(["--weights", str(DEMO_DIR), "--n", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res == json.loads(capsys.readouterr().out)
    assert res["n"] == 2 and res["side"]["mean_cells"] > 0
    assert res["presence"]["focus_margin_mean"] > 0  # the shipped model knows a finding is there
    # The swapped text's cells hold the side-only ones (the same findings, or where they would be).
    assert res["swapped"]["mean_cells"] >= res["side"]["mean_cells"]
    assert res["command"].startswith("python -m llmcxr_app.demo.evaluate.side_margin --weights")

"""bench/agreement.py: where two greedy runs part, and the model's margin there, against transformers' own
generate scores (tiny random GPT-NeoX of conftest, CPU)."""

from __future__ import annotations

import pytest
import torch

from llmcxr_app import protocol
from llmcxr_app.bench import agreement

PROMPT_TEXT = "Moderate right pleural effusion."


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], None),
        ([1, 2, 3], [1, 5, 3], 1),
        ([1, 2, 3], [4, 2, 3], 0),
        ([1, 2, 3], [1, 2], 2),  # one run stopped earlier
        ([], [], None),
    ],
)
def test_first_difference(a, b, expected):
    assert agreement.first_difference(a, b) == expected


@pytest.fixture(scope="module")
def greedy_run(model, tiny_tokenizer):
    """A prompt, HF generate's greedy ids after it, and the scores it chose them from."""
    prompt = protocol.build_prompt_ids(tiny_tokenizer, "Describe the findings.", input_text=PROMPT_TEXT)
    x = torch.tensor([prompt])
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=8,
        min_new_tokens=8,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=0,
    )
    return prompt, out.sequences[0, len(prompt) :].tolist(), [s[0].float() for s in out.scores]


def test_margin_is_the_gap_generate_saw(model, greedy_run):
    """Swap the greedy id at step k for the runner-up: the difference is found at k, and its margin is the
    top-1 minus top-2 score that generate (cached decoding) saw there."""
    prompt, ids, scores = greedy_run
    k = 5
    top2 = scores[k].topk(2)
    assert top2.indices[0].item() == ids[k]
    other = ids[:k] + [top2.indices[1].item()] + ids[k + 1 :]
    got = agreement.compare(model, prompt, ids, other)
    assert got["match"] is False and got["first_difference"] == k
    expected = float(top2.values[0] - top2.values[1])
    assert got["margin"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got["margin"] > 0  # greedy picked the baseline's id
    # Seen from the other run, the same place has the opposite sign.
    assert agreement.compare(model, prompt, other, ids)["margin"] == pytest.approx(-got["margin"], abs=1e-5)


def test_equal_runs_and_an_early_stop_have_no_margin(model, greedy_run):
    prompt, ids, _ = greedy_run
    assert agreement.compare(model, prompt, ids, list(ids)) == {
        "match": True,
        "first_difference": None,
        "margin": None,
    }
    assert agreement.compare(model, prompt, ids, ids[:3]) == {
        "match": False,
        "first_difference": 3,
        "margin": None,
    }


def test_summary():
    same = {"match": True, "first_difference": None, "margin": None}
    apart = {"match": False, "first_difference": 37, "margin": 0.00412}
    assert agreement.summary({"text": same, "draw": same}) == "yes"
    assert agreement.summary({"text": apart, "draw": same}) == "no: text@37 (0.00412)"
    stopped = {"match": False, "first_difference": 3, "margin": None}
    assert agreement.summary({"text": same, "draw": stopped}) == "no: draw@3"

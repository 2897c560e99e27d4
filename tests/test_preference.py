"""demo/train/preference.py: the critic's agreement, the pairs it makes from the model's own drawings, the
starting model's margin as DPO's reference (against one-sequence forwards), and candidates drawn exactly as
the app's own loop draws them."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig
from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.pairs import Pair, findings_text
from llmcxr_app.demo.evaluate.reader import truth_dict
from llmcxr_app.demo.train import preference
from llmcxr_app.demo.train.losses import contrast_loss, pair_logprobs
from llmcxr_app.engine.generation import generate_image
from tests.conftest import TINY_VQGAN

GRID = 256
ASKED = Findings(cardiomegaly=True, effusion="right", effusion_size="large")


def test_agreement_counts_the_findings_and_attributes_read_as_asked():
    read = dict(truth_dict(ASKED))
    assert preference.agreement(read, ASKED) == 11
    assert preference.agreement({**read, "effusion_side": "bilateral"}, ASKED) == 10
    assert preference.agreement({**read, "effusion_side": "left", "pneumothorax": True}, ASKED) == 9
    nothing = {
        **read,
        "cardiomegaly": False,
        "effusion": False,
        "effusion_side": "none",
        "effusion_size": "none",
    }
    assert preference.agreement(nothing, ASKED) == 7


def _request(agreement: tuple[int, ...]) -> preference.Request:
    candidates = tuple(
        tuple((k + i) % TINY_VQGAN.n_embed for i in range(GRID)) for k in range(len(agreement))
    )
    return preference.Request(ASKED, candidates, agreement)


def test_a_pair_prefers_the_most_agreeing_candidate_over_the_least(tiny_tokenizer):
    layout = protocol.token_layout(tiny_tokenizer, TINY_VQGAN.n_embed)
    request = _request((9, 11, 7, 11))
    pair = preference.preference_pair(request, tiny_tokenizer, TINY_VQGAN.n_embed, GRID)
    drawn_first = pair.true_ids[pair.true_start + 1 : pair.true_start + 1 + GRID]
    drawn_second = pair.swapped_ids[pair.swapped_start + 1 : pair.swapped_start + 1 + GRID]
    assert drawn_first == layout.shift(request.candidates[1])  # the first of the two best
    assert drawn_second == layout.shift(request.candidates[2])
    assert pair.true_ids[: pair.true_start] == pair.swapped_ids[: pair.swapped_start]  # one request
    assert pair.true_ids[pair.true_start] == layout.image_open_id
    assert pair.cells == tuple(range(GRID)) and pair.reference == 0.0
    assert preference.preference_pair(_request((8, 8, 8)), tiny_tokenizer, TINY_VQGAN.n_embed, GRID) is None


def _alone(model, ids: list[int], start: int) -> torch.Tensor:
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return torch.stack([logp[start + k, ids[start + 1 + k]] for k in range(GRID)])


def test_the_reference_is_the_starting_models_margin_and_dpo_starts_at_log_2(model, tiny_tokenizer):
    requests = [_request((10, 6)), _request((5, 9, 7))]
    pairs = [preference.preference_pair(r, tiny_tokenizer, TINY_VQGAN.n_embed, GRID) for r in requests]
    cpu = torch.device("cpu")
    referenced = preference.with_reference(model, pairs, tiny_tokenizer.pad_token_id, cpu, batch=1)
    for pair in referenced:
        first = _alone(model, pair.true_ids, pair.true_start)
        second = _alone(model, pair.swapped_ids, pair.swapped_start)
        assert math.isclose(pair.reference, float((first - second).sum()), abs_tol=1e-3)
    assert referenced[0].reference != referenced[1].reference
    with torch.no_grad():
        a, b = pair_logprobs(model, referenced, tiny_tokenizer.pad_token_id, cpu)
    reference = torch.tensor([p.reference for p in referenced])
    loss, margins = contrast_loss(a, b, [p.cells for p in referenced], 0.1, reference)
    torch.testing.assert_close(margins, torch.zeros(2), atol=2e-3, rtol=0)  # the model is its own reference
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0)), atol=1e-3, rtol=0)
    _, raw = contrast_loss(a, b, [p.cells for p in referenced], 0.1)  # no reference: the margins themselves
    torch.testing.assert_close(raw, reference, atol=2e-3, rtol=0)


def _draw(model, tokenizer, findings: Findings, seed: int, guidance: float, negative: Findings | None):
    layout = protocol.token_layout(tokenizer, TINY_VQGAN.n_embed)
    kw = {"codebook_size": TINY_VQGAN.n_embed, "grid_tokens": GRID}
    instruction = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
    prompt = protocol.build_prompt_ids(tokenizer, instruction, input_text=findings_text(findings), **kw)
    negative_ids = None
    if negative is not None:
        negative_ids = protocol.build_prompt_ids(
            tokenizer, instruction, input_text=findings_text(negative), **kw
        )
    sampling = SamplingConfig(seed=seed, guidance=guidance)
    *_, last = generate_image(model, layout, prompt, GRID, sampling, negative_ids=negative_ids)
    return tuple(last.codes)


def test_candidates_are_the_apps_guided_draws_with_seeds_in_turn(model, tiny_tokenizer):
    kw = {"codebook_size": TINY_VQGAN.n_embed, "grid_tokens": GRID}
    drawn = preference.draw_candidates(model, tiny_tokenizer, ASKED, n=2, seed=5, guidance=2.0, **kw)
    assert drawn == [_draw(model, tiny_tokenizer, ASKED, s, 2.0, ASKED.swapped()) for s in (5, 6)]
    assert drawn[0] != drawn[1] and all(0 <= c < TINY_VQGAN.n_embed for c in drawn[0])
    plain = Findings(cardiomegaly=True)  # nothing to swap: drawn unguided, as the app draws it
    assert preference.draw_candidates(model, tiny_tokenizer, plain, n=1, seed=5, guidance=2.0, **kw) == [
        _draw(model, tiny_tokenizer, plain, 5, 1.0, None)
    ]


def test_the_summary_counts_candidates_and_exact_readings():
    requests = [_request((11, 7)), _request((9, 9, 11))]
    pairs = [replace(Pair([], [], 0, 0, GRID, ()), reference=r) for r in (2.0, 4.0)]
    said = preference.summary(requests, pairs)
    assert said["prompts"] == 2 and said["candidates"] == 5 and said["pairs"] == 2
    assert said["read_exactly_share"] == 2 / 5 and said["agreement_best_mean"] == 11.0
    assert said["agreement_worst_mean"] == 8.0 and said["reference_margin_mean"] == 3.0

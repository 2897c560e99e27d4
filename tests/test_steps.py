"""engine/steps.py: two prompts run as one batch of two give each prompt's own logits."""

from __future__ import annotations

import pytest
import torch

from llmcxr_app.engine.steps import decode_pair_step, decode_step, pair_inputs, prefill


@pytest.mark.parametrize("lengths", [(9, 4), (4, 9), (6, 6)])
def test_a_pair_scores_each_prompt_as_it_would_alone(model, lengths):
    g = torch.Generator().manual_seed(sum(lengths))
    vocab = model.get_input_embeddings().weight.shape[0]
    first, second = (torch.randint(0, vocab, (1, n), generator=g) for n in lengths)
    pair = pair_inputs(first, second)
    both, past = prefill(model, **pair)
    mask = pair["attention_mask"]
    alone = [prefill(model, first), prefill(model, second)]
    assert both.shape == (2, vocab) and mask.shape == (2, max(lengths))
    assert mask.sum(-1).tolist() == list(lengths)
    for step, token in enumerate([5, 17, 3]):
        for row in range(2):
            torch.testing.assert_close(both[row], alone[row][0][0], atol=1e-5, rtol=1e-5)
        both, past, mask = decode_pair_step(model, torch.tensor(token), past, mask)
        alone = [
            decode_step(model, token, cache, n + step) for (_, cache), n in zip(alone, lengths, strict=True)
        ]
    for row in range(2):
        torch.testing.assert_close(both[row], alone[row][0][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[0], both[1])  # different prompts: the rows are not one copied

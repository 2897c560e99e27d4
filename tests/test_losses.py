"""demo/train/losses.py: the completion loss against transformers' own, and the pair contrast against
one-sequence forwards and its own definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.pairs import Pair
from llmcxr_app.demo.train.losses import completion_loss, contrast_loss, pair_contrast, pair_logprobs


def _loss_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 12, 20, generator=g)
    labels = torch.randint(0, 20, (3, 12), generator=g)
    labels[0, :9] = -100  # a short answer: 2 targets after the shift
    labels[1, :2] = -100  # a long response: 9 targets
    labels[2, :] = -100  # nothing to learn (e.g. all padding): must not count
    return logits, labels


def test_token_weighted_loss_is_the_hugging_face_causal_lm_loss():
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, labels = _loss_batch()
    reference = ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1])
    torch.testing.assert_close(completion_loss(logits, labels, "token"), reference)


def test_example_weighted_loss_averages_each_example_first():
    logits, labels = _loss_batch()
    means = []
    for row in range(2):  # row 2 has no targets
        keep = labels[row, 1:] != -100
        means.append(torch.nn.functional.cross_entropy(logits[row, :-1][keep], labels[row, 1:][keep]))
    torch.testing.assert_close(completion_loss(logits, labels, "example"), torch.stack(means).mean())
    assert not torch.allclose(completion_loss(logits, labels, "token"), torch.stack(means).mean())
    with pytest.raises(ValueError, match="weighting"):
        completion_loss(logits, labels, "sequence")


def test_focus_weights_make_a_weighted_mean_in_either_weighting():
    logits, labels = _loss_batch()
    ones = torch.ones(labels.shape)
    for how in ("token", "example"):
        torch.testing.assert_close(
            completion_loss(logits, labels, how, ones), completion_loss(logits, labels, how)
        )
    batch = [data.Example(ids=[0] * labels.shape[1], n_prompt=1, task="x", focus=(3, 4)) for _ in range(3)]
    weights = data.focus_weights(batch, labels.shape[1], 4.0)
    assert weights[:, 3:5].eq(4.0).all() and weights.sum() == labels.numel() + 3 * 2 * 3.0
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
    )
    w = (labels[:, 1:] != -100) * weights[:, 1:]
    torch.testing.assert_close(completion_loss(logits, labels, "token", weights), (ce * w).sum() / w.sum())


def _pairs(model, n: int, length: int = 40, n_codes: int = 16) -> list[Pair]:
    """Random pairs for the tiny model: two prompts of different lengths before the same image ids."""
    rng = np.random.default_rng(3)
    vocab = model.get_input_embeddings().weight.shape[0]
    out = []
    for i in range(n):
        image = rng.integers(0, vocab, n_codes + 3).tolist()  # "<", the codes, ">", "### End"
        a, b = rng.integers(0, vocab, length + i).tolist(), rng.integers(0, vocab, length - 5).tolist()
        cells = tuple(sorted(rng.choice(n_codes, 5, replace=False).tolist()))
        out.append(Pair(a + image, b + image, len(a), len(b), n_codes, cells))
    return out


def _alone(model, ids: list[int], start: int, n_codes: int) -> torch.Tensor:
    """log p of the n_codes ids after position `start`, from a forward over this sequence alone."""
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return torch.stack([logp[start + k, ids[start + 1 + k]] for k in range(n_codes)])


def test_pair_logprobs_match_each_sequence_scored_alone(model):
    pairs = _pairs(model, 3)
    with torch.no_grad():
        true, swapped = pair_logprobs(model, pairs, pad_id=0, device=torch.device("cpu"))
    assert true.shape == swapped.shape == (3, 16)
    for i, p in enumerate(pairs):  # padding (the shorter rows) changes nothing
        torch.testing.assert_close(true[i], _alone(model, p.true_ids, p.true_start, 16), atol=1e-5, rtol=0)
        reference = _alone(model, p.swapped_ids, p.swapped_start, 16)
        torch.testing.assert_close(swapped[i], reference, atol=1e-5, rtol=0)
    assert not torch.allclose(true, swapped)  # the texts differ, so do the scores


def test_contrast_loss_is_the_logistic_loss_of_the_margin_over_the_cells():
    g = torch.Generator().manual_seed(0)
    true, swapped = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    cells = [(0, 2), (5,)]
    loss, margins = contrast_loss(true, swapped, cells, beta=0.5)
    expected = torch.stack([(true[0] - swapped[0])[[0, 2]].sum(), true[1, 5] - swapped[1, 5]])
    torch.testing.assert_close(margins, expected)
    torch.testing.assert_close(loss, torch.log1p(torch.exp(-0.5 * expected)).mean())
    changed = true.clone()
    changed[0, 1] += 10.0  # outside the pair's cells: no effect
    torch.testing.assert_close(contrast_loss(changed, swapped, cells, beta=0.5)[0], loss)
    ahead = true.clone()
    ahead[:, :] += 10.0  # the true text explains every id far better: the loss fades
    assert contrast_loss(ahead, swapped, cells, beta=0.5)[0] < 0.05 < loss


def test_steps_on_the_contrast_raise_the_margin(tiny_llm_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).train()
    pairs = _pairs(model, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _, before = pair_contrast(model, pairs, 0.5, pad_id=0, device=torch.device("cpu"))
    for _ in range(5):
        loss, _ = pair_contrast(model, pairs, 0.5, pad_id=0, device=torch.device("cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, after = pair_contrast(model, pairs, 0.5, pad_id=0, device=torch.device("cpu"))
    assert after > before + 1.0

"""engine/generation.py on a tiny random GPT-NeoX in the official layout (CPU)."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import TINY_VQGAN
from reference import hf_generate_greedy

from llmcxr_app import protocol
from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine.generation import (
    GenerationCancelled,
    generate_image,
    generate_text,
    guide,
    mask_logits,
    sample_on_device,
)
from llmcxr_app.engine.steps import decode_step, prefill


@pytest.fixture(scope="module")
def prompt(tiny_tokenizer):
    return protocol.build_prompt_ids(
        tiny_tokenizer, "What is deep learning?", codebook_size=TINY_VQGAN.n_embed
    )


def biased(bias: torch.Tensor, after: int = 0):
    """A (prefill_fn, step) pair that adds ``bias`` to the logits from generated token ``after`` on."""

    def pf(model, ids):
        logits, past = prefill(model, ids)
        return (logits + bias if after == 0 else logits), past

    def st(model, token, past, position):
        logits, past = decode_step(model, token, past, position)
        generated = position - st.n_prompt + 1  # tokens already generated when these logits are used
        return (logits + bias if generated >= after else logits), past

    return pf, st


def scripted(script: list[int], vocab: int):
    """A (prefill_fn, step) pair that makes script[i] the only sensible choice for generated token i."""
    n_prompt = {}

    def forced(i):
        logits = torch.full((1, vocab), -1e4)
        logits[0, script[i]] = 0.0
        return logits

    def pf(model, ids):
        _, past = prefill(model, ids)
        n_prompt["n"] = ids.shape[1]
        return forced(0), past

    def st(model, token, past, position):
        _, past = decode_step(model, token, past, position)
        return forced(position - n_prompt["n"] + 1), past

    return pf, st


def test_mask_logits(layout):
    v = layout.total_vocab + 3  # an LM head padded beyond the image ids
    logits = torch.randn(1, v)
    text = mask_logits(logits, "text", layout)
    image = mask_logits(logits, "image", layout)
    assert torch.equal(text[0, : layout.vocab_size], logits[0, : layout.vocab_size])
    assert torch.isinf(text[0, layout.vocab_size :]).all()
    assert torch.equal(
        image[0, layout.vocab_size : layout.total_vocab], logits[0, layout.vocab_size : layout.total_vocab]
    )
    assert (
        torch.isinf(image[0, : layout.vocab_size]).all() and torch.isinf(image[0, layout.total_vocab :]).all()
    )
    with pytest.raises(ValueError):
        mask_logits(logits, "audio", layout)


def sample(logits, **settings):
    token, prob = sample_on_device(logits, **settings)
    return int(token), float(prob)


def _hf_draw(logits, seed, temperature, top_p=1.0, top_k=0):
    """The id transformers' own warpers (temperature, top-k, top-p, in generate's order) and a seeded
    multinomial pick."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    if temperature == 0:
        return int(logits.argmax())
    warpers = [TemperatureLogitsWarper(temperature)]
    warpers += [TopKLogitsWarper(top_k)] if top_k else []
    warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    scores = LogitsProcessorList(warpers)(None, logits.clone())
    return int(torch.multinomial(torch.softmax(scores, -1), 1, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.0},
        {"temperature": 1.0},
        {"temperature": 0.7, "top_p": 0.5},
        {"temperature": 1.3, "top_k": 5},
        {"temperature": 1.0, "top_p": 0.92, "top_k": 40},
    ],
)
def test_sampling_draws_what_transformers_warpers_draw(settings):
    torch.manual_seed(0)
    for seed in range(20):
        logits = torch.randn(1, 300) * 3
        logits[0, :50] = float("-inf")  # masked ids, as in image mode
        ours, _ = sample(logits, generator=torch.Generator().manual_seed(seed), **settings)
        assert ours == _hf_draw(logits, seed, **settings), (settings, seed)


def test_sample_filters_and_reports_untruncated_prob():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    logits = probs.log()
    gen = torch.Generator().manual_seed(0)
    # top_p 0.5: id 0 (mass before 0) and id 1 (mass before 0.4) stay; id 2 has 0.7 before it.
    seen = {sample(logits, temperature=1.0, top_p=0.5, generator=gen)[0] for _ in range(200)}
    assert seen == {0, 1}
    seen = {sample(logits, temperature=1.0, top_p=1.0, top_k=3, generator=gen)[0] for _ in range(300)}
    assert seen == {0, 1, 2}
    token, prob = sample(logits, temperature=1.0, top_p=0.3, generator=gen)
    assert token == 0 and prob == pytest.approx(0.4)  # before truncation, not the renormalised 1.0
    token, prob = sample(logits, temperature=2.0, top_k=1, generator=gen)
    assert token == 0 and prob == pytest.approx(float(torch.softmax(logits / 2.0, -1)[0]))
    assert sample(logits, temperature=0.0) == (0, pytest.approx(0.4))
    # Frequencies follow the renormalised nucleus: 0.4/0.7 for id 0.
    draws = [sample(logits, temperature=1.0, top_p=0.5, generator=gen)[0] for _ in range(2000)]
    assert draws.count(0) / len(draws) == pytest.approx(0.4 / 0.7, abs=0.04)


def test_greedy_matches_hf_generate(model, tiny_tokenizer, layout, prompt):
    from transformers import LogitsProcessor, LogitsProcessorList

    class NoImageIds(LogitsProcessor):  # written independently of mask_logits
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, len(tiny_tokenizer) :] = -float("inf")
            return scores

    sampling = SamplingConfig(temperature=0.0, max_new_tokens=24)
    pieces = list(generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, 512))
    ours = [p.token_id for p in pieces if p.stop != "end"]
    ref = hf_generate_greedy(
        model, prompt, 24, [layout.end_id, tiny_tokenizer.eos_token_id], LogitsProcessorList([NoImageIds()])
    )
    assert ours == ref and len(ours) > 0


def test_text_never_emits_image_ids(model, tiny_tokenizer, layout, prompt):
    bias = torch.zeros(1, layout.total_vocab)
    bias[0, layout.vocab_size :] = 50.0  # the unmasked model would pick image ids every time
    pf, st = biased(bias)
    st.n_prompt = len(prompt)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=20, seed=1)
    pieces = list(
        generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, 512, prefill_fn=pf, step=st)
    )
    assert len(pieces) == 20 and pieces[-1].stop == "length"
    assert all(p.token_id < layout.vocab_size for p in pieces)


def test_text_stops_at_end_and_hides_it(model, tiny_tokenizer, layout, prompt):
    bias = torch.zeros(1, layout.total_vocab)
    bias[0, layout.end_id] = 100.0
    pf, st = biased(bias, after=3)
    st.n_prompt = len(prompt)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=50, seed=3)
    pieces = list(
        generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, 512, prefill_fn=pf, step=st)
    )
    assert pieces[-1].stop == "end" and pieces[-1].token_id == layout.end_id
    assert pieces[-1].tokens == 3 and len(pieces) == 4
    assert protocol.END_KEY not in pieces[-1].text


def test_max_new_tokens_clamped_to_context(model, tiny_tokenizer, layout, prompt):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=100, seed=0)
    pieces = list(generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, len(prompt) + 5))
    assert pieces[-1].tokens <= 5
    with pytest.raises(ValueError):
        next(generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, len(prompt)))


def test_seed_reproduces_and_differs(model, tiny_tokenizer, layout, prompt):
    def run(seed):
        s = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16, seed=seed)
        return [p.token_id for p in generate_text(model, layout, tiny_tokenizer, prompt, s, None, 512)]

    a, b, c = run(7), run(7), run(8)
    assert a == b and a != c


def test_streamed_pieces_concatenate_to_text(model, tiny_tokenizer, layout, prompt):
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=40, seed=11)
    pieces = list(generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, 512))
    ids = [p.token_id for p in pieces if p.stop != "end"]
    final = tiny_tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
    assert "".join(p.delta for p in pieces) == pieces[-1].text == final
    assert all(p.text == "".join(q.delta for q in pieces[: i + 1]) for i, p in enumerate(pieces))


def _byte_token_ids(tokenizer, text: str) -> list[int]:
    """One id per UTF-8 byte of ``text`` (GPT-2 byte-to-unicode alphabet), so characters split across ids."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b], n = chr(256 + n), n + 1
    ids = tokenizer.convert_tokens_to_ids([table[b] for b in text.encode("utf-8")])
    assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id == tokenizer.eos_token_id
    return ids


def test_multibyte_characters_stream_whole(model, tiny_tokenizer, layout, prompt):
    instr = tiny_tokenizer.convert_tokens_to_ids(protocol.INSTRUCTION_KEY)
    script = (
        _byte_token_ids(tiny_tokenizer, " Café, na")
        + [instr]  # a special token mid-answer: skipped in the text
        + _byte_token_ids(tiny_tokenizer, "ïve, 肺\n\n")
        + [layout.end_id]
    )
    pf, st = scripted(script, layout.total_vocab)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=100, seed=0)
    pieces = list(
        generate_text(model, layout, tiny_tokenizer, prompt, sampling, None, 512, prefill_fn=pf, step=st)
    )
    assert [p.token_id for p in pieces] == script
    deltas = [p.delta for p in pieces]
    assert not any("\ufffd" in d for d in deltas)
    assert "".join(deltas) == pieces[-1].text == "Café, naïve, 肺"
    assert " 肺" in deltas  # emitted whole once its third byte arrived (with the space held back before it)
    assert pieces[-1].stop == "end"


def test_image_mode_shape_and_forced_frame(model, layout, prompt):
    bias = torch.zeros(1, layout.total_vocab)
    bias[0, : layout.vocab_size] = 50.0  # the unmasked model would write text every time
    fed = []

    def st(m, token, past, position):
        fed.append((token, position))
        logits, past = decode_step(m, token, past, position)
        return logits + bias, past

    sampling = SamplingConfig(temperature=1.0, seed=5)
    steps = list(generate_image(model, layout, prompt, 256, sampling, None, 512, step=st))
    final = steps[-1]
    assert len(steps) == 256 and final.done and len(final.codes) == len(final.probs) == 256
    assert all(0 <= c < TINY_VQGAN.n_embed for c in final.codes)
    assert all(0.0 < p <= 1.0 for p in final.probs)
    assert fed[0] == (layout.image_open_id, len(prompt))  # "<" forced first
    assert [t for t, _ in fed[1:]] == layout.shift(final.codes[:-1])
    assert [pos for _, pos in fed] == list(range(len(prompt), len(prompt) + 256))
    assert steps[9].codes == final.codes[:10]
    again = list(generate_image(model, layout, prompt, 256, sampling, None, 512, step=st))[-1]
    assert again.codes == final.codes and again.probs == final.probs
    with pytest.raises(ValueError):
        next(generate_image(model, layout, prompt, 256, sampling, None, len(prompt) + 257))


def test_image_greedy_probs_match_full_forward(model, layout, prompt):
    steps = list(generate_image(model, layout, prompt, 8, SamplingConfig(temperature=0.0), None, 512))
    codes, probs = steps[-1].codes, steps[-1].probs
    ids = torch.tensor([list(prompt) + [layout.image_open_id] + layout.shift(codes)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) : len(prompt) + 8, layout.vocab_size : layout.total_vocab]
    ref = torch.softmax(logits.float(), -1)
    assert ref.argmax(-1).tolist() == codes
    assert torch.allclose(ref.max(-1).values, torch.tensor(probs), atol=1e-5)


def test_guide_moves_the_log_probs_away_from_the_negative():
    cond = torch.tensor([[2.0, 1.0, 0.0, float("-inf")]])
    negative = torch.tensor([[3.0, 0.0, 0.0, float("-inf")]])
    c, u = torch.log_softmax(cond, -1), torch.log_softmax(negative, -1)
    torch.testing.assert_close(guide(cond, negative, 1.0), c)  # scale 1: the model's own distribution
    got = guide(cond, negative, 3.0)
    assert torch.isinf(got[0, 3]) and got[0, 3] < 0  # a masked id stays masked
    by_hand = torch.tensor([[u[0, i] + 3.0 * (c[0, i] - u[0, i]) for i in range(3)]])
    torch.testing.assert_close(got[:, :3], by_hand)
    # The id the normal prompt favours more than the findings do loses mass; the one it disfavours gains.
    p_cond, p_guided = torch.softmax(cond, -1), torch.softmax(got, -1)
    assert p_guided[0, 0] < p_cond[0, 0] and p_guided[0, 1] > p_cond[0, 1]


@pytest.mark.parametrize(("split_width", "batched"), [(None, True), (4, True), (4, False)])
def test_guided_greedy_image_matches_two_full_forwards(
    model, tiny_tokenizer, layout, prompt, split_width, batched
):
    """Each guided id is the argmax of u + s (c - u) over image ids, c and u the log-probs of full forwards
    (no cache) of the prompt and of the negative prompt, each followed by "<" and the ids so far. With
    split_width W, ids in columns >= W // 2 swap the two: the negative guided away from the prompt.
    ``batched``: the eager pair batch; else a path with steps of its own (prompt and negative apart)."""
    negative = protocol.build_prompt_ids(tiny_tokenizer, "A normal chest.", codebook_size=TINY_VQGAN.n_embed)
    sampling = SamplingConfig(temperature=0.0, guidance=2.5)
    kw = {"negative_ids": negative, "split_width": split_width}
    if not batched:
        kw["step"] = lambda *args: decode_step(*args)  # not the eager step itself: runs unbatched
    codes = list(generate_image(model, layout, prompt, 8, sampling, None, 512, **kw))[-1].codes
    image = slice(layout.vocab_size, layout.total_vocab)

    def log_probs(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0, -1, image].float(), -1)

    for i in range(8):
        tail = [layout.image_open_id] + layout.shift(codes[:i])
        c, u = log_probs(list(prompt) + tail), log_probs(list(negative) + tail)
        if split_width and i % split_width >= split_width // 2:
            c, u = u, c
        assert int(torch.argmax(u + 2.5 * (c - u))) == codes[i], i
    # Unguided, or guided without the split, draws differently (else this test checks nothing).
    other = SamplingConfig(temperature=0.0) if split_width is None else sampling
    unsplit = list(generate_image(model, layout, prompt, 8, other, None, 512, negative_ids=negative))
    assert unsplit[-1].codes != codes


def test_a_guided_drawing_runs_its_two_prompts_as_one_batch(model, tiny_tokenizer, layout, prompt):
    """Eager: one forward per id, guided or not; a path with steps of its own (a fast path's cache holds
    one sequence) runs the negative beside it, two forwards per id, and draws the same ids."""
    negative = protocol.build_prompt_ids(
        tiny_tokenizer, "Small left effusion.", codebook_size=TINY_VQGAN.n_embed
    )
    sampling = SamplingConfig(temperature=1.0, seed=7, guidance=2.0)
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        batched = list(generate_image(model, layout, prompt, 8, sampling, None, 512, negative_ids=negative))
        n_batched = len(calls)

        def own_step(*args):  # not the eager decode_step: the loop cannot batch its cache
            return decode_step(*args)

        kw = {"negative_ids": negative, "step": own_step}
        separate = list(generate_image(model, layout, prompt, 8, sampling, None, 512, **kw))
    finally:
        handle.remove()
    assert n_batched == 1 + 8  # one prefill of the pair, then one step per id
    assert len(calls) - n_batched == 2 * (1 + 8)
    assert batched[-1].codes == separate[-1].codes
    torch.testing.assert_close(batched[-1].probs, separate[-1].probs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, None])  # None: a checkpoint default nobody resolved, taken as 1
def test_guidance_one_runs_no_negative_and_needs_one_above(model, layout, prompt, scale):
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        sampling = SamplingConfig(temperature=1.0, seed=4, guidance=scale)
        plain = list(generate_image(model, layout, prompt, 8, sampling, None, 512))[-1]
        n_plain = len(calls)
        same = list(generate_image(model, layout, prompt, 8, sampling, None, 512, negative_ids=prompt))[-1]
    finally:
        handle.remove()
    assert same.codes == plain.codes and same.probs == plain.probs and len(calls) == 2 * n_plain
    with pytest.raises(ValueError, match="negative_ids"):
        next(generate_image(model, layout, prompt, 8, SamplingConfig(guidance=2.0), None, 512))
    with pytest.raises(ValueError, match="guidance"):
        SamplingConfig(guidance=0.5)


@pytest.mark.parametrize("mode", ["text", "text_lookahead", "image"])
def test_cancel_stops_within_one_step(model, tiny_tokenizer, layout, prompt, mode):
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    cancel, k = threading.Event(), 3
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=50, seed=0)
    if mode.startswith("text"):
        ahead = mode == "text_lookahead"  # the CUDA default, forced here
        stream = generate_text(model, layout, tiny_tokenizer, prompt, sampling, cancel, 512, lookahead=ahead)
    else:
        stream = generate_image(model, layout, prompt, 256, sampling, cancel, 512)
    got = 0
    try:
        with pytest.raises(GenerationCancelled):
            for _ in stream:
                got += 1
                if got == k:
                    cancel.set()
    finally:
        handle.remove()
    assert got == k and len(calls) <= k + 1
    cancel_first = threading.Event()
    cancel_first.set()
    with pytest.raises(GenerationCancelled):
        next(generate_text(model, layout, tiny_tokenizer, prompt, sampling, cancel_first, 512))


def _biased_run(model, tokenizer, layout, prompt, bias, sampling, context, lookahead, after=0):
    """generate_text with ``bias`` on the logits from generated id ``after`` on; returns (pieces, the position
    of each step call)."""
    pf, st = biased(bias, after)
    st.n_prompt = len(prompt)
    positions = []

    def step(model, token, past, position):
        positions.append(position)
        return st(model, token, past, position)

    stream = generate_text(
        model,
        layout,
        tokenizer,
        prompt,
        sampling,
        None,
        context,
        prefill_fn=pf,
        step=step,
        lookahead=lookahead,
    )
    return list(stream), positions


@pytest.mark.parametrize(
    ("case", "sampling"),
    [
        ("plain", SamplingConfig(temperature=0.0, max_new_tokens=30)),  # greedy, stops at the length
        ("plain", SamplingConfig(temperature=1.0, top_p=0.9, top_k=20, max_new_tokens=30, seed=4)),
        ("ends", SamplingConfig(temperature=1.0, max_new_tokens=50, seed=3)),  # stops at ### End
    ],
)
def test_lookahead_streams_the_same_pieces(model, tiny_tokenizer, layout, prompt, case, sampling):
    """Feeding each sampled id to the step before reading it (the CUDA default, forced here on the CPU) gives
    the same pieces; it runs one step more only when the answer ends at a stop id."""
    bias = torch.zeros(1, layout.total_vocab)
    if case == "ends":
        bias[0, layout.end_id] = 100.0
    after = 5 if case == "ends" else 10**6
    args = (model, tiny_tokenizer, layout, prompt, bias, sampling, 512)
    plain, plain_steps = _biased_run(*args, lookahead=False, after=after)
    ahead, ahead_steps = _biased_run(*args, lookahead=True, after=after)
    assert ahead == plain and len(plain) > 3
    assert len(plain_steps) == len(plain) - 1  # one step per kept id after the prefill's
    assert len(ahead_steps) == len(plain_steps) + (1 if plain[-1].stop == "end" else 0)
    assert plain[-1].stop == ("end" if case == "ends" else "length")


def test_lookahead_feeds_each_kept_id_once_at_its_position(model, tiny_tokenizer, layout, prompt):
    """Up to the length limit (here the context's): ids 1..4 of 5 are fed at the positions after the prompt,
    and the last one is not fed at all (the answer is complete)."""
    bias = torch.zeros(1, layout.total_vocab)
    bias[0, [layout.end_id, tiny_tokenizer.eos_token_id]] = -1e4  # no early stop
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=100)
    n = len(prompt)
    pieces, positions = _biased_run(
        model, tiny_tokenizer, layout, prompt, bias, sampling, n + 5, lookahead=True
    )
    assert pieces[-1].stop == "length" and pieces[-1].tokens == 5
    assert positions == [n, n + 1, n + 2, n + 3]

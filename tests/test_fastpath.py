"""engine/fastpath.py on the tiny random GPT-NeoX of conftest (CPU; a CUDA-graph check runs only where CUDA is)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import pytest
import torch
from conftest import TINY_VQGAN
from reference import hf_generate_greedy

from llmcxr_app import protocol
from llmcxr_app.config import RuntimeConfig, SamplingConfig
from llmcxr_app.engine import fastpath, generation
from llmcxr_app.engine.fastpath import FastPath, FastPathConfig, bucket_sizes

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=40)
SEEDED = SamplingConfig(temperature=1.0, top_p=0.9, top_k=12, seed=5)
# Small buckets and reserve so that one request fills its first cache and grows into larger ones.
SMALL = FastPathConfig(static_cache=True, compile=False, min_bucket=64, reserve=8)
GRID = 64  # image ids per test image (the loop does not care about 256; the full size runs once)


def draw_ids(tokenizer, findings: str) -> list[int]:
    """The draw prompt for ``findings``."""
    return protocol.build_prompt_ids(
        tokenizer,
        protocol.REPORT_TO_CXR_INSTRUCTIONS[0],
        input_text=findings,
        codebook_size=TINY_VQGAN.n_embed,
    )


@pytest.fixture(scope="module")
def draw_prompt(tiny_tokenizer):
    return draw_ids(tiny_tokenizer, "Moderate right pleural effusion.")


@pytest.fixture(scope="module")
def image_prompt(tiny_tokenizer):
    codes = torch.randint(0, TINY_VQGAN.n_embed, (256,), generator=torch.Generator().manual_seed(1)).tolist()
    return protocol.build_prompt_ids(
        tiny_tokenizer,
        protocol.CXR_TO_REPORT_INSTRUCTIONS[0],
        image_codes=codes,
        codebook_size=TINY_VQGAN.n_embed,
    )


def text_ids(model, tokenizer, layout, prompt, sampling, **fns):
    return [
        p.token_id
        for p in generation.generate_text(model, layout, tokenizer, prompt, sampling, None, 512, **fns)
    ]


def image_of(stream):
    updates = list(stream)
    return updates[-1].codes, updates[-1].probs, [len(u.codes) for u in updates]


@pytest.fixture(scope="module")
def eager_image(model, layout, draw_prompt):
    """Reference: generation.py's eager loop (DynamicCache), greedy."""
    return image_of(generation.generate_image(model, layout, draw_prompt, GRID, GREEDY))


@pytest.mark.parametrize(("reserve", "reachable"), [(40, [64, 128, 256]), (0, [16, 32, 64, 128, 256])])
def test_warmup_covers_exactly_the_buckets_prefill_can_pick(model, layout, reserve, reachable):
    """Every prompt length through the real prefill: the buckets it picks (and those a full cache grows into,
    always upwards) are the reachable ones, so the warm-up compiles nothing a request never uses."""
    config = FastPathConfig(static_cache=True, compile=False, min_bucket=16, reserve=reserve)
    fast = FastPath(model, context_length=256, config=config)
    picked = {fast.prefill(model, torch.zeros((1, n), dtype=torch.long))[1].capacity for n in range(1, 256)}
    assert fast.reachable_sizes == reachable == [s for s in fast.sizes if s >= min(picked)]
    assert fast.warmup(layout)["buckets"] == reachable


def test_bucket_sizes():
    assert bucket_sizes(2048) == [256, 512, 1024, 2048]
    assert bucket_sizes(600) == [256, 512, 600]
    assert bucket_sizes(100) == [100]
    assert bucket_sizes(512, 64) == [64, 128, 256, 512]


def test_static_cache_text_matches_eager_and_hf(model, tiny_tokenizer, layout, image_prompt):
    from transformers import LogitsProcessorList

    from llmcxr_app.bench.measure import Mask

    fast = FastPath(model, context_length=512, config=SMALL)
    ref = text_ids(model, tiny_tokenizer, layout, image_prompt, GREEDY)
    ours = text_ids(
        model, tiny_tokenizer, layout, image_prompt, GREEDY, prefill_fn=fast.prefill, step=fast.step
    )
    assert ours == ref and fast.mode == "static"
    stops = [layout.end_id, tiny_tokenizer.eos_token_id]
    text_only = LogitsProcessorList([Mask(layout, len(image_prompt), "text", [])])
    hf = hf_generate_greedy(model, image_prompt, GREEDY.max_new_tokens, stops, text_only)
    assert [t for t in ours if t not in stops] == hf and len(hf) > 5


def test_static_cache_grows_and_matches_eager_image(model, layout, draw_prompt, eager_image):
    fast = FastPath(model, context_length=512, config=SMALL)
    codes, probs, counts = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
    ref_codes, ref_probs, _ = eager_image
    assert codes == ref_codes and probs == pytest.approx(ref_probs, rel=1e-4)
    assert len(draw_prompt) + 8 <= 128 and len(draw_prompt) + GRID > 128  # it had to grow
    assert counts == [1, 8, 16, 24, 32, 40, 48, 56, 64]  # first id, every grid row (8 of 64), the end
    # The per-token seam gives the same answer as the device-side loop.
    seam = image_of(
        generation.generate_image(
            model, layout, draw_prompt, GRID, GREEDY, prefill_fn=fast.prefill, step=fast.step
        )
    )
    assert seam[0] == codes and seam[1] == probs


def test_pool_bytes_counts_every_pooled_cache(model, draw_prompt):
    """pool_bytes is what the pooled StaticCaches hold: keys and values, every layer, every bucket."""
    fast = FastPath(model, context_length=512, config=SMALL)
    assert fast.pool_bytes == 0
    cfg = model.config
    per_position = cfg.num_hidden_layers * 2 * cfg.hidden_size * 4  # keys and values, fp32
    fast.prefill(model, torch.tensor([draw_prompt]))
    first = fastpath._bucket_for(len(draw_prompt) + SMALL.reserve, fast.sizes)
    assert fast.pool_bytes == first * per_position
    second = fast.sizes[-2]  # both fit the pool's budget (the context length) together
    assert first < second and first + second <= 512
    fast.prefill(model, torch.tensor([draw_prompt]), capacity=second)
    assert fast.pool_bytes == (first + second) * per_position


def test_seeded_sampling_same_as_per_token_loop(model, layout, draw_prompt):
    fast = FastPath(model, context_length=512, config=SMALL)
    a = image_of(fast.generate_image(model, layout, draw_prompt, GRID, SEEDED))
    b = image_of(
        generation.generate_image(
            model, layout, draw_prompt, GRID, SEEDED, prefill_fn=fast.prefill, step=fast.step
        )
    )
    c = image_of(generation.generate_image(model, layout, draw_prompt, GRID, SEEDED))
    assert a[:2] == b[:2] and a[0] == c[0]
    assert len(set(a[0])) > 3  # really sampled, not one repeated id


@pytest.fixture(scope="module")
def normal_prompt(tiny_tokenizer):
    """A guided drawing's negative prompt (the draw instruction with a normal report)."""
    return draw_ids(tiny_tokenizer, "No acute cardiopulmonary process.")


def test_a_guided_drawing_matches_eager(model, layout, draw_prompt, normal_prompt, eager_image):
    """The negative prompt runs eagerly beside the static cache: the same ids as the eager loop's."""
    guided = replace(SEEDED, guidance=2.0)
    fast = FastPath(model, context_length=512, config=SMALL)
    codes, probs, _ = image_of(
        fast.generate_image(model, layout, draw_prompt, GRID, guided, negative_ids=normal_prompt)
    )
    ref = image_of(
        generation.generate_image(model, layout, draw_prompt, GRID, guided, negative_ids=normal_prompt)
    )
    assert codes == ref[0] and probs == pytest.approx(ref[1], rel=1e-4)
    assert codes != image_of(fast.generate_image(model, layout, draw_prompt, GRID, SEEDED))[0]


def test_full_image_and_cancel(model, layout, draw_prompt, eager_image):
    fast = FastPath(model, context_length=512, config=FastPathConfig(static_cache=True, compile=False))
    codes, probs, counts = image_of(fast.generate_image(model, layout, draw_prompt, 256, GREEDY))
    assert codes[:GRID] == eager_image[0]  # greedy: the first ids do not depend on how many follow
    assert counts == [1, *range(16, 257, 16)] and all(0 <= c < TINY_VQGAN.n_embed for c in codes)
    cancel = threading.Event()
    stream = fast.generate_image(model, layout, draw_prompt, 256, GREEDY, cancel)
    next(stream)
    cancel.set()
    with pytest.raises(generation.GenerationCancelled):
        next(stream)


def test_compile_path_with_dynamo_tracing(model, layout, draw_prompt, eager_image):
    """torch.compile with backend="eager": dynamo traces the whole step (fullgraph) without code generation."""
    fast = FastPath(
        model,
        context_length=512,
        config=FastPathConfig(compile=True, static_cache=True, backend="eager", min_bucket=512),
    )
    assert fast.mode == "compiled"
    codes, _, _ = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
    assert codes == eager_image[0] and fast.mode == "compiled" and fast.fallback_reason is None


def test_falls_back_once_when_compile_raises(model, layout, draw_prompt, eager_image, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level(logging.WARNING, logger=fastpath.__name__):
        fast = FastPath(model, context_length=512, config=FastPathConfig(static_cache=True, compile=True))
        first = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
        second = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
    assert fast.mode == "static" and "no compiler here" in fast.fallback_reason
    assert first[0] == second[0] == eager_image[0]
    messages = [r.message for r in caplog.records]
    assert (
        len([m for m in messages if "does not compile as one graph" in m]) == 1
    )  # then graph breaks: fails too
    assert len([m for m in messages if "compiling the decode step failed" in m]) == 1


def test_falls_back_once_when_the_compiled_step_raises(
    model, layout, draw_prompt, eager_image, monkeypatch, caplog
):
    calls = []

    def compiled_that_fails(fn, **kwargs):
        def run(*args):
            calls.append(1)
            if len(calls) == 3:  # fail mid-image, after two good compiled steps
                raise RuntimeError("graph capture failed")
            return fn(*args)

        return run

    monkeypatch.setattr(torch, "compile", compiled_that_fails)
    with caplog.at_level(logging.WARNING, logger=fastpath.__name__):
        config = FastPathConfig(static_cache=True, compile=True, fullgraph=True)  # no second option
        fast = FastPath(model, context_length=512, config=config)
        first = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
        second = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))
    assert len(calls) == 3 and fast.mode == "static"
    assert first[0] == second[0] == eager_image[0]
    assert len([r for r in caplog.records if "graph capture failed" in r.message]) == 1


def test_retries_with_graph_breaks_allowed(model, layout, draw_prompt, eager_image, monkeypatch, caplog):
    """What bitsandbytes 4-bit may need: no single graph, but a compiled step with breaks still works."""

    def compile_without_fullgraph(fn, *, fullgraph, **kwargs):
        def run(*args):
            if fullgraph:
                raise RuntimeError("graph break in Linear4bit")
            return fn(*args)

        return run

    monkeypatch.setattr(torch, "compile", compile_without_fullgraph)
    with caplog.at_level(logging.WARNING, logger=fastpath.__name__):
        fast = FastPath(model, context_length=512, config=FastPathConfig(static_cache=True, compile=True))
        codes = image_of(fast.generate_image(model, layout, draw_prompt, GRID, GREEDY))[0]
    assert fast.mode == "compiled" and fast.fullgraph is False and fast.fallback_reason is None
    assert codes == eager_image[0]
    assert [r.message for r in caplog.records if "one graph" in r.message] != []


def test_defaults_on_cpu_and_flag_off(tiny_location, model):
    assert FastPath(model, context_length=512).mode == "eager"  # measured fastest on CPU
    with pytest.raises(ValueError, match="static cache"):
        FastPath(model, context_length=512, config=FastPathConfig(static_cache=False, compile=True))
    from llmcxr_app.loading.weights import load_model

    llm, _ = load_model(tiny_location, RuntimeConfig(device="cpu", quantization="fp32"))
    assert fastpath.fast_path_for(llm, RuntimeConfig(fast_path=False)) is None
    assert fastpath.fast_path_for(llm, RuntimeConfig()).mode == "eager"


def test_studio_with_fast_path_and_warmup(tiny_location):
    from llmcxr_app.loading.weights import load_model
    from llmcxr_app.studio.facade import Studio

    llm, vqgan = load_model(tiny_location, RuntimeConfig(device="cpu", quantization="fp32"))
    fast = FastPath(
        llm.model, context_length=llm.context_length, config=FastPathConfig(static_cache=True, compile=False)
    )
    studio = Studio.from_parts(llm, vqgan, tiny_location, prefill_fn=fast.prefill, step=fast.step)
    report = studio.warm_up(fast)
    assert report["mode"] == "static" and report["compile_s"] >= 0 and report["draw_s"] > 0
    # Warmed 512 then 256 (a budget of 512 tokens keeps one); the draw (prompt + 258 reserve) took 512.
    assert list(fast._pool) == [512]
    plain = Studio.from_parts(llm, vqgan, tiny_location)
    findings = "Small left pleural effusion."
    ours = Studio.finish(studio.draw(findings, sampling=SamplingConfig(temperature=0.0), preview_every=0))
    ref = Studio.finish(plain.draw(findings, sampling=SamplingConfig(temperature=0.0), preview_every=0))
    assert ours.codes == ref.codes and ours.image.tobytes() == ref.image.tobytes()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA graphs via reduce-overhead)")
def test_cuda_graphs_match_eager(model, layout, draw_prompt, eager_image):
    gpu = model.to("cuda")
    try:
        fast = FastPath(gpu, context_length=512)  # CUDA defaults: static cache + inductor reduce-overhead
        fast.warmup(layout)
        codes, _, _ = image_of(fast.generate_image(gpu, layout, draw_prompt, GRID, GREEDY))
        assert fast.mode == "compiled" and fast.fallback_reason is None
        ref = image_of(generation.generate_image(gpu, layout, draw_prompt, GRID, GREEDY))[0]
        assert codes == ref
    finally:
        model.to("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA graphs via reduce-overhead)")
def test_cuda_guided_drawing_matches_eager(model, layout, draw_prompt, normal_prompt):
    """Compiled steps for the drawing, eager ones for its negative prompt, on one GPU model."""
    gpu, guided = model.to("cuda"), replace(GREEDY, guidance=2.0)
    try:
        fast = FastPath(gpu, context_length=512)
        fast.warmup(layout)
        codes = image_of(
            fast.generate_image(gpu, layout, draw_prompt, GRID, guided, negative_ids=normal_prompt)
        )
        ref = image_of(
            generation.generate_image(gpu, layout, draw_prompt, GRID, guided, negative_ids=normal_prompt)
        )
        assert fast.mode == "compiled" and codes[0] == ref[0]
    finally:
        model.to("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (pinned copies, events, CUDA graphs)")
def test_cuda_text_with_lookahead_matches_eager(model, tiny_tokenizer, layout, image_prompt):
    """On CUDA, text feeds each sampled id to the compiled step before the host reads it (the default
    there); greedy ids equal the eager loop's without lookahead."""
    gpu = model.to("cuda")
    try:
        fast = FastPath(gpu, context_length=512)
        fast.warmup(layout)
        ours = text_ids(
            gpu, tiny_tokenizer, layout, image_prompt, GREEDY, prefill_fn=fast.prefill, step=fast.step
        )
        ref = text_ids(gpu, tiny_tokenizer, layout, image_prompt, GREEDY, lookahead=False)
        assert fast.mode == "compiled" and ours == ref and len(ours) > 5
    finally:
        model.to("cpu")

"""studio/facade.py end to end on the tiny random models of conftest (CPU)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_VQGAN
from PIL import Image

from llmcxr_app import protocol
from llmcxr_app.config import RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.engine.generation import GenerationCancelled, generate_image, generate_text
from llmcxr_app.imaging import images as imaging
from llmcxr_app.studio import guidance
from llmcxr_app.studio.facade import Studio, StudioInputError
from llmcxr_app.studio.guidance import NORMAL_TEXT, NOTHING_TO_SWAP, SWAPPED_AS_TYPED
from llmcxr_app.studio.reading import canonical_text, read_findings

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=6)
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture(scope="module")
def studio(tiny_location) -> Studio:
    return Studio.from_settings(
        Settings(
            model=tiny_location, runtime=RuntimeConfig(device="cpu", quantization="fp32", fast_path=False)
        )
    )


@pytest.fixture(scope="module")
def xray() -> Image.Image:
    """A non-square gray image with structure (so the crop and the codes mean something)."""
    y, x = np.mgrid[0:48, 0:40]
    return Image.fromarray(((np.sin(x / 4.0) * np.cos(y / 6.0) + 1) * 120).astype(np.uint8), mode="L")


def test_info(studio, tiny_location):
    info = studio.info
    assert (info.grid, info.resolution, info.codebook_size) == (16, TINY_VQGAN.resolution, TINY_VQGAN.n_embed)
    assert info.context_length == 512 and info.device == "cpu" and info.model_name == tiny_location.name
    assert info.weight_hash and info.quantization == "fp32"


def test_info_and_provenance_carry_each_part_hash(studio, tiny_location):
    """The LLM's and the VQ-GAN's fingerprints separately, and the combined one, in the info and every answer."""
    from pathlib import Path

    from llmcxr_app.loading.files import weight_hash

    llm_files = list(studio.llm.weight_files)
    vq_files = [Path(tiny_location.vqgan_ckpt), Path(tiny_location.vqgan_config)]
    info = studio.info
    assert info.llm_hash == weight_hash(llm_files) and info.vqgan_hash == weight_hash(vq_files)
    assert info.weight_hash == weight_hash(llm_files + vq_files)
    prov = Studio.finish(studio.ask("Is the heart enlarged?", sampling=GREEDY)).provenance
    assert (prov["llm_hash"], prov["vqgan_hash"], prov["weight_hash"]) == (
        info.llm_hash,
        info.vqgan_hash,
        info.weight_hash,
    )


def test_prepare_matches_the_vqgan_path(studio, xray):
    prepared = studio.prepare(xray)
    model_input = imaging.to_model_input(xray, TINY_VQGAN.resolution)
    ref = studio.vqgan.encode_codes(model_input.tensor)[0].tolist()
    assert prepared.codes == ref and len(ref) == 256
    assert prepared.reconstruction.mode == "L" and prepared.reconstruction.size == (32, 32)
    assert prepared.crop_box == pytest.approx(model_input.crop_box)
    assert prepared.crop_box[1] > 0  # the taller-than-wide image was cropped top and bottom
    assert prepared.source is None
    loaded = imaging.LoadedImage(image=xray, source_format="PNG", metadata={})
    assert studio.prepare(loaded).source is loaded


def test_draw_streams_rows_and_returns_a_full_image(studio):
    updates = list(
        studio.draw("Moderate right pleural effusion.", sampling=SamplingConfig(seed=3), preview_every=4)
    )
    assert [u.rows_done for u in updates] == list(range(1, 17))
    assert all(u.result is None for u in updates[:-1]) and updates[-1].result is not None
    previews = {u.rows_done: u.image for u in updates[:-1] if u.image is not None}
    assert sorted(previews) == [4, 8, 12]
    px = np.asarray(previews[4])
    assert (px[8:] == 128).all() and not (px[:8] == 128).all()  # 4 of 16 rows = 8 of 32 pixel rows known
    result = updates[-1].result
    assert result.task == protocol.TASK_DRAW and result.text == ""
    assert len(result.codes) == 256 and all(0 <= c < TINY_VQGAN.n_embed for c in result.codes)
    assert len(result.probs) == 256 and all(0 < p <= 1 for p in result.probs)
    ref = imaging.tensor_to_image(studio.vqgan.decode_codes(torch.tensor([result.codes])))
    assert result.image.mode == "L" and np.array_equal(np.asarray(result.image), np.asarray(ref))
    assert updates[-1].image is result.image
    for key in (
        "model",
        "weight_hash",
        "quantization",
        "device",
        "seed",
        "sampling",
        "app_version",
        "timestamp",
    ):
        assert key in result.provenance
    assert result.provenance["seed"] == 3 and result.provenance["task"] == "draw"
    assert result.timings["tokens"] == 256 and result.timings["tokens_per_s"] > 0


def test_draw_seed_reproduces_and_random_seed_is_reported(studio):
    a = Studio.finish(studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=11), preview_every=0))
    b = Studio.finish(studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=11), preview_every=0))
    assert a.codes == b.codes and a.probs == b.probs
    c = Studio.finish(studio.draw("Lungs are clear.", preview_every=0))
    seed = c.provenance["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31
    d = Studio.finish(studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=seed), preview_every=0))
    assert d.codes == c.codes and c.codes != a.codes


def _guided_by_hand(studio, text: str, negative_text: str, sampling: SamplingConfig) -> list[int]:
    """The codes of the engine's guided loop given the negative prompt directly (no Studio choosing it)."""
    instruction = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
    prompt = [studio._prompt(instruction, input_text=t) for t in (text, negative_text)]
    llm = studio.llm
    args = (llm.model, llm.layout, prompt[0], studio.vqgan.grid_tokens, sampling)
    *_, last = generate_image(*args, context_length=studio.info.context_length, negative_ids=prompt[1])
    return last.codes


def test_a_guided_draw_runs_the_swapped_or_normal_negative_and_records_it(studio):
    text = "Large left effusion."

    def draw(**kw):
        sampling = SamplingConfig(seed=2, **kw)
        return Studio.finish(studio.draw(text, sampling=sampling, preview_every=0))

    plain = draw()  # this checkpoint declares no guidance: unguided by default
    assert studio.info.draw_guidance == 1.0 and plain.provenance["sampling"]["guidance"] == 1.0
    assert plain.provenance["guided_away_from"] is plain.provenance["guidance_negative"] is None
    assert plain.codes == draw(guidance=1.0).codes
    swapped, normal = draw(guidance=3.0), draw(guidance=3.0, guide_away_from="normal")
    assert (
        swapped.provenance["guided_away_from"] == "swapped"
        and swapped.provenance["sampling"]["guidance"] == 3
    )
    assert swapped.provenance["guidance_negative"] == SWAPPED_AS_TYPED  # the user's words are not recorded
    assert normal.provenance["guidance_negative"] == NORMAL_TEXT  # the app's fixed text
    by_hand = SamplingConfig(seed=2, guidance=3.0)
    assert swapped.codes == _guided_by_hand(studio, text, "Small right effusion.", by_hand)
    assert normal.codes == _guided_by_hand(studio, text, NORMAL_TEXT, by_hand)
    assert len({tuple(plain.codes), tuple(swapped.codes), tuple(normal.codes)}) == 3


def test_a_canonical_draw_of_a_one_sided_finding_draws_each_half_from_its_own_side(studio):
    """ "sides" (the default): the prompt holds the patient's right half's findings, the negative the left
    half's, and the loop swaps their roles in each row's second half (engine split_width)."""
    canonical = Studio.from_parts(replace(studio.llm, draw_prompt="canonical"), studio.vqgan, studio.location)
    text, sampling = "Large left effusion, no PTX.", SamplingConfig(seed=2, guidance=3.0)
    result = Studio.finish(canonical.draw(text, sampling=sampling, preview_every=0))
    right = canonical_text(read_findings(""))  # the effusion is on the left only
    left = canonical_text(read_findings("Large left pleural effusion."))
    prov = result.provenance
    assert prov["guided_away_from"] == "sides" and prov["model_findings"] == left
    assert prov["guidance_negative"] == f"right half: {right} | left half: {left}"
    instruction = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
    ids = [canonical._prompt(instruction, input_text=t) for t in (right, left)]
    llm, grid = canonical.llm, canonical.vqgan.grid
    args = (llm.model, llm.layout, ids[0], grid * grid, sampling)
    kw = {"context_length": canonical.info.context_length, "negative_ids": ids[1], "split_width": grid}
    assert result.codes == list(generate_image(*args, **kw))[-1].codes
    swapped = replace(sampling, guide_away_from="swapped")
    other = Studio.finish(canonical.draw(text, sampling=swapped, preview_every=0))
    assert other.provenance["guided_away_from"] == "swapped" and other.codes != result.codes


def test_the_apps_cpu_path_runs_a_guided_draw_as_one_batch_of_two(studio, tiny_location):
    """The app's default runtime on a CPU (its fast path, without a static cache there) draws a guided
    image with one forward per id, as many as unguided, and the same ids as the plain eager studio."""
    runtime = RuntimeConfig(device="cpu", quantization="fp32", fast_path=True, warmup=False)
    app = Studio.from_settings(Settings(model=tiny_location, runtime=runtime), background_warm_up=False)
    calls = []
    handle = app.llm.model.register_forward_pre_hook(lambda *_: calls.append(1))

    def draw(on, guidance):
        return Studio.finish(
            on.draw(
                "Large left effusion.", sampling=SamplingConfig(seed=5, guidance=guidance), preview_every=0
            )
        )

    try:
        plain = draw(app, 1.0)
        n_plain = len(calls)
        guided = draw(app, 3.0)
    finally:
        handle.remove()
    assert n_plain == len(calls) - n_plain == 1 + studio.vqgan.grid_tokens
    assert guided.codes == draw(studio, 3.0).codes != plain.codes


def test_a_draw_with_nothing_to_swap_runs_unguided_and_says_why(studio):
    def draw(**kw):
        sampling = SamplingConfig(seed=4, **kw)
        return Studio.finish(studio.draw("Cardiomegaly.", sampling=sampling, preview_every=0))

    asked = draw(guidance=2.5)
    assert asked.codes == draw().codes  # the same as the model's own drawing (no second sequence)
    assert asked.provenance["sampling"]["guidance"] == 1.0 and asked.provenance["guided_away_from"] is None
    assert asked.provenance["guidance_skipped"] == NOTHING_TO_SWAP


def test_a_checkpoints_own_guidance_is_the_default_of_its_drawings(studio):
    llm = replace(studio.llm, draw_guidance=3.0)  # what llmcxr_draw_guidance 3 in config.json loads as
    guided = Studio.from_parts(llm, studio.vqgan, studio.location)
    assert guided.info.draw_guidance == 3.0
    text, seeded = "Large left effusion.", SamplingConfig(seed=2)
    by_default = Studio.finish(guided.draw(text, sampling=seeded, preview_every=0))
    asked = Studio.finish(studio.draw(text, sampling=replace(seeded, guidance=3.0), preview_every=0))
    assert by_default.codes == asked.codes and by_default.provenance["sampling"]["guidance"] == 3.0
    off = Studio.finish(guided.draw(text, sampling=replace(seeded, guidance=1.0), preview_every=0))
    assert off.codes != by_default.codes and off.provenance["guided_away_from"] is None


def test_describe_and_ask_build_the_upstream_prompts(studio, xray):
    prepared = studio.prepare(xray)
    llm = studio.llm

    def reference(instruction, codes):
        ids = protocol.build_prompt_ids(
            llm.tokenizer, instruction, image_codes=codes, codebook_size=TINY_VQGAN.n_embed
        )
        pieces = list(generate_text(llm.model, llm.layout, llm.tokenizer, ids, GREEDY, None, 512))
        return pieces[-1].text, len(ids)

    updates = list(studio.describe(prepared, sampling=GREEDY))
    result = updates[-1].result
    text, n_prompt = reference(protocol.CXR_TO_REPORT_INSTRUCTIONS[0], prepared.codes)
    assert result.task == protocol.TASK_REPORT and result.text == text
    assert result.timings["prompt_tokens"] == n_prompt and result.timings["prompt_s"] > 0
    assert all(u.text == result.text[: len(u.text)] for u in updates)

    vqa = Studio.finish(studio.ask("Is there cardiomegaly?", prepared, sampling=GREEDY))
    assert (
        vqa.task == protocol.TASK_VQA and vqa.text == reference("Is there cardiomegaly?", prepared.codes)[0]
    )
    plain = Studio.finish(studio.ask("What is deep learning?", sampling=GREEDY))
    assert plain.task == protocol.TASK_INSTRUCT and plain.text == reference("What is deep learning?", None)[0]
    assert "What is deep learning?" not in str(plain.provenance)  # user text stays out of provenance


def test_input_errors(studio, xray):
    prepared = studio.prepare(xray)
    for call in (
        lambda: studio.draw("   "),
        lambda: studio.ask(""),
        lambda: studio.describe(None),
        lambda: studio.ask("What is <image> here?", prepared),
    ):
        with pytest.raises(StudioInputError):
            call()
    long = "Moderate right pleural effusion with compressive atelectasis. " * 40
    with pytest.raises(StudioInputError, match=r"512-token context.*words") as info:
        studio.draw(long)
    assert "tokens" in str(info.value) and "\n" not in str(info.value)


def test_a_negative_prompt_longer_than_the_context_is_refused_before_drawing(studio, monkeypatch):
    """The negative runs beside the drawing: when it leaves no room for the image, the request is refused
    with the readable message, not stopped by the engine."""
    text = "Large left effusion."
    assert Studio.finish(studio.draw(text, sampling=SamplingConfig(seed=1, guidance=2.0), preview_every=0))
    padded = guidance.Negative("Small right effusion. " * 60, guidance.SWAPPED_AS_TYPED, "swapped")
    monkeypatch.setattr(guidance, "negative_for", lambda *a: padded)
    with pytest.raises(StudioInputError, match=r"512-token context"):
        studio.draw(text, sampling=SamplingConfig(seed=1, guidance=2.0))
    assert Studio.finish(studio.draw(text, sampling=SamplingConfig(seed=1, guidance=1.0), preview_every=0))


def test_cancel_releases_the_model(studio):
    cancel = threading.Event()
    stream = studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=1), cancel=cancel, preview_every=0)
    seen = 0
    with pytest.raises(GenerationCancelled):
        for _ in stream:
            seen += 1
            if seen == 2:
                cancel.set()
    assert seen == 2 and not studio._lock.locked()
    assert Studio.finish(studio.ask("What is deep learning?", sampling=GREEDY)).task == protocol.TASK_INSTRUCT


def test_one_request_at_a_time_and_cancel_while_queued(studio):
    first = studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=2), preview_every=0)
    next(first)  # holds the model now
    cancel = threading.Event()
    queued = studio.ask("What is deep learning?", sampling=GREEDY, cancel=cancel)
    box = {}

    def consume():
        try:
            Studio.finish(queued)
        except GenerationCancelled as exc:
            box["cancelled"] = exc

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join(0.3)
    assert worker.is_alive()  # waiting for the lock, not generating
    cancel.set()
    worker.join(5)
    assert "cancelled" in box
    first.close()  # abandoning a stream releases the model
    assert not studio._lock.locked()
    again = studio.draw("Lungs are clear.", sampling=SamplingConfig(seed=4), preview_every=0)
    assert len(Studio.finish(again).codes) == 256


def test_requests_wait_for_a_background_warm_up(studio, monkeypatch):
    """start_warm_up: a request sent meanwhile waits for it (or leaves when cancelled), then runs."""
    release = threading.Event()
    monkeypatch.setattr(studio, "warm_up", lambda fast: release.wait(10) and {"mode": "eager"})
    warmer = studio.start_warm_up(None)
    assert not studio.ready.is_set()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        Studio.finish(studio.ask("Is the heart enlarged?", sampling=GREEDY, cancel=cancel))
    done: list = []
    waiting = threading.Thread(
        target=lambda: done.append(Studio.finish(studio.ask("Heart?", sampling=GREEDY)))
    )
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and not done  # held back by the warm-up
    release.set()
    warmer.join(10)
    waiting.join(30)
    assert studio.ready.is_set() and done and done[0].task == protocol.TASK_INSTRUCT


def test_a_model_without_the_key_draws_from_the_text_as_typed(studio):
    assert studio.info.draw_prompt == studio.info.question_prompt == "verbatim"
    assert Studio.finish(studio.ask("Any PTX?", sampling=GREEDY)).provenance["asked"] is None
    result = Studio.finish(studio.draw("Massive R effusion, no PTX.", sampling=GREEDY, preview_every=0))
    prov = result.provenance
    assert prov["draw_prompt"] == "verbatim" and prov["model_findings"] is None
    assert prov["read_as"] == "large right pleural effusion"  # the labeler's reading, shown to the user


def test_the_demo_checkpoint_draws_the_labelers_reading_unless_verbatim():
    """weights/demo declares llmcxr_draw_prompt "canonical": a clinician's text is drawn exactly as its
    template report would be, and verbatim=True gives the model the text as typed."""
    from llmcxr_app.config import DEMO_MODEL

    demo = Studio.from_settings(
        Settings(model=DEMO_MODEL, runtime=RuntimeConfig(device="cpu", fast_path=False, warmup=False))
    )
    assert demo.info.draw_prompt == "canonical"
    # The swapped negative: "sides" splits only a reading, so the two would be guided differently.
    text, seeded = "Massive R effusion, no PTX.", SamplingConfig(seed=5, guide_away_from="swapped")

    def draw(findings: str, verbatim: bool = False):
        return Studio.finish(demo.draw(findings, sampling=seeded, preview_every=0, verbatim=verbatim))

    read = draw(text)
    template = canonical_text(read_findings(text))
    assert read.codes == draw(template, verbatim=True).codes
    assert read.provenance["draw_prompt"] == "canonical" and read.provenance["model_findings"] == template
    typed = draw(text, verbatim=True)
    assert typed.provenance["draw_prompt"] == "verbatim" and typed.provenance["model_findings"] is None
    assert typed.codes != read.codes

    # Questions about an X-ray: the template question they read as, unless verbatim or nothing is read.
    assert demo.info.question_prompt == "canonical"
    xray = demo.prepare(Image.open(EXAMPLES / "pneumothorax_left.png"))

    def ask(question: str, image=xray, verbatim: bool = False):
        return Studio.finish(demo.ask(question, image, sampling=GREEDY, verbatim=verbatim))

    shorthand = ask("PTX - which side?")
    assert shorthand.provenance["asked"] == "Which side is the pneumothorax on?"
    assert shorthand.text == ask("Which side is the pneumothorax on?", verbatim=True).text
    assert ask("PTX - which side?", verbatim=True).provenance["asked"] is None
    normal = ask("Is the heart size normal?")  # yes means absent: the presence question, turned round
    assert normal.provenance["asked"] == "Is there cardiomegaly?" and normal.provenance["opposite"]
    reply = normal.provenance["model_answer"]
    assert reply == ask("Is there cardiomegaly?", verbatim=True).text
    assert {"Yes.": "No.", "No.": "Yes."}[reply] == normal.text
    assert ask("Any PTX?", image=None).provenance["asked"] is None  # no image: a plain instruction

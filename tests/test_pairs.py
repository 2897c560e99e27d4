"""demo/data/pairs.py: the contrast pairs hold the guided drawing's two prompts before the same image ids."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from llmcxr_app import protocol
from llmcxr_app.demo.data import samples
from llmcxr_app.demo.data.findings import EFFUSION_SIZES, SIDES, ZONES, Findings
from llmcxr_app.demo.data.pairs import contrast_cells, contrast_pairs, findings_text
from llmcxr_app.studio import guidance
from llmcxr_app.studio.reading import canonical_text, read_findings


def _lateral_findings() -> list[Findings]:
    """Every combination of one effusion, pneumothorax and consolidation (each possibly absent)."""
    effusions = [("none", "none")] + list(itertools.product((*SIDES, "bilateral"), EFFUSION_SIZES))
    out = []
    for (side, size), ptx, zone in itertools.product(effusions, ("none", *SIDES), ("none", *ZONES)):
        out.append(Findings(effusion=side, effusion_size=size, pneumothorax=ptx, consolidation=zone))
    return out


def test_the_swapped_text_is_the_guided_drawings_negative_prompt():
    for findings in _lateral_findings():
        swapped = findings.swapped()
        assert swapped.swapped() == findings
        reading = read_findings(findings_text(findings))
        negative = guidance.negative_for(findings_text(findings), reading, True, "swapped")
        if swapped == findings:  # nothing to swap: the app draws it unguided
            assert negative is None and findings.is_normal()
        else:  # the app's negative: the swapped findings, a small effusion left out
            assert negative.text == findings_text(findings.guidance_negative()), findings
            if findings.effusion_size == "small":
                assert findings.guidance_negative() == replace(swapped, effusion="none", effusion_size="none")
            else:
                assert findings.guidance_negative() == swapped
    assert Findings(cardiomegaly=True, edema=True, ett=True).swapped() == Findings(
        cardiomegaly=True, edema=True, ett=True
    )
    big = Findings(effusion="bilateral", effusion_size="small", consolidation="right upper").swapped()
    assert (big.effusion, big.effusion_size, big.consolidation) == ("bilateral", "large", "left lower")
    assert canonical_text(read_findings(findings_text(big))) == findings_text(big)


@pytest.fixture(scope="module")
def rendered() -> list[samples.Sample]:
    return samples.render_samples(range(24), 128)


def test_pairs_put_the_two_texts_before_the_same_image_ids(rendered, tiny_tokenizer):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 32, 256).tolist() for _ in rendered]
    pairs = contrast_pairs(tiny_tokenizer, rendered, codes, codebook_size=32, grid=16, rng=rng)
    swappable = [s for s in rendered if s.findings.swapped() != s.findings]
    assert 0 < len(pairs) == len(swappable) < len(rendered)
    layout = protocol.token_layout(tiny_tokenizer, 32)
    for pair, sample in zip(pairs, swappable, strict=True):
        assert pair.true_ids[pair.true_start :] == pair.swapped_ids[pair.swapped_start :]
        assert pair.true_ids[pair.true_start] == layout.image_open_id and pair.n_codes == 256
        code = codes[rendered.index(sample)]
        assert pair.true_ids[pair.true_start + 1 : pair.true_start + 257] == list(layout.shift(code))
        true_prompt = tiny_tokenizer.decode(pair.true_ids[: pair.true_start])
        swapped_prompt = tiny_tokenizer.decode(pair.swapped_ids[: pair.swapped_start])
        assert findings_text(sample.findings) in true_prompt
        assert findings_text(sample.findings.swapped()) in swapped_prompt
        # The same drawing instruction in both: only the findings differ.
        assert true_prompt.replace(findings_text(sample.findings), "") == swapped_prompt.replace(
            findings_text(sample.findings.swapped()), ""
        )
    # Cells the caller has already (a round that also weighs them) give the same pairs.
    known = [contrast_cells(s, 16) for s in rendered]
    again = contrast_pairs(
        tiny_tokenizer, rendered, codes, codebook_size=32, grid=16, rng=np.random.default_rng(0), cells=known
    )
    rebuilt = contrast_pairs(
        tiny_tokenizer, rendered, codes, codebook_size=32, grid=16, rng=np.random.default_rng(0)
    )
    assert again == rebuilt and all(p.cells for p in again)


def _phantom_with(findings: Findings, seed: int = 0) -> samples.Sample:
    """Phantom `seed`'s anatomy drawn with `findings`, as a 128 px model-input sample."""
    image = samples.phantoms.render(findings, seed, size=samples.PHANTOM_SIZE)
    pixels = np.asarray(samples.to_model_input(image, 128).image.convert("L"))
    return samples.Sample(seed, pixels, findings, "")


def test_contrast_cells_cover_the_finding_and_where_the_swapped_one_would_be():
    sample = _phantom_with(Findings(effusion="right", effusion_size="large"))
    own = set(samples.finding_cells(sample, 16))
    cells = set(contrast_cells(sample, 16))
    columns = {c % 16 for c in cells - own}
    assert own < cells
    # The patient's right is the image's left: the swapped (left) effusion adds cells on the image's right.
    assert own and max(c % 16 for c in own) < 8 and columns and min(columns) >= 8


def test_pairs_against_the_guidance_negative_leave_a_small_effusion_out(rendered, tiny_tokenizer):
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 32, 256).tolist() for _ in rendered]
    kw = {"codebook_size": 32, "grid": 16}
    pairs = contrast_pairs(
        tiny_tokenizer, rendered, codes, rng=np.random.default_rng(0), against="negative", **kw
    )
    swappable = [s for s in rendered if s.findings.guidance_negative() != s.findings]
    assert len(pairs) == len(swappable)
    small = [i for i, s in enumerate(swappable) if s.findings.effusion_size == "small"]
    assert small  # the 24 phantoms hold a small effusion
    for i in small:
        prompt = tiny_tokenizer.decode(pairs[i].swapped_ids[: pairs[i].swapped_start])
        assert findings_text(swappable[i].findings.guidance_negative()) in prompt
        assert "No pleural effusion" in prompt
        assert pairs[i].cells == contrast_cells(swappable[i], 16, "negative")
    with pytest.raises(ValueError, match="contrast_against"):
        contrast_cells(rendered[0], 16, "mirrored")


def test_the_cells_against_a_missing_small_effusion_are_the_effusions_own():
    sample = _phantom_with(Findings(effusion="right", effusion_size="small"))
    own = set(samples.finding_cells(sample, 16))
    assert own and set(contrast_cells(sample, 16, "negative")) == own  # nothing else would show
    assert own < set(contrast_cells(sample, 16))  # the swapped large left effusion adds its cells

"""studio/guidance.py: what a guided drawing is pushed away from."""

from __future__ import annotations

import pytest

from llmcxr_app.config import SamplingConfig
from llmcxr_app.studio import guidance
from llmcxr_app.studio.reading import canonical_text, read_findings


@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("Large right pleural effusion.", "Small left pleural effusion."),
        ("small L PTX; RUL consolidation", "large R PTX; LLL consolidation"),
        ("LEFT LOWER LOBE", "RIGHT UPPER LOBE"),
        ("Massive Rt effusion, R>L", "Tiny Lt effusion, L>R"),
        ("RLL and LUL opacities", "LUL and RLL opacities"),
        ("r/o R effusion, 2 l of fluid", "r/o L effusion, 2 l of fluid"),
        ("Cardiomegaly. Bilateral moderate effusions.", "Cardiomegaly. Bilateral moderate effusions."),
    ],
)
def test_swap_words_swaps_side_size_and_zone_words_keeping_case(text, swapped):
    assert guidance.swap_words(text) == swapped
    assert guidance.swap_words(swapped) == text  # swapping twice gives the text back


def test_swap_words_leaves_words_that_only_contain_an_attribute():
    text = "Enlargement, lowering, rightward shift; largely clear; PTX-R is not a word it knows."
    assert guidance.swap_words(text) == text.replace("PTX-R", "PTX-L")


def test_the_swapped_reading_keeps_the_findings_and_swaps_each_stated_attribute():
    reading = read_findings("Small right effusion. Left pneumothorax. Consolidation in the right upper zone.")
    swapped = guidance.swapped_reading(reading)
    assert swapped.states == reading.states
    assert swapped.attributes == {
        "effusion_side": "left",
        "effusion_size": "large",
        "pneumothorax_side": "right",
        "consolidation_zone": "left lower",
    }
    unstated = read_findings("Pleural effusion and cardiomegaly.")  # side and size not stated: kept
    assert guidance.swapped_reading(unstated).attributes == unstated.attributes


def test_a_canonical_negative_is_the_template_report_of_the_swapped_reading():
    text = "Massive R effusion, no PTX."
    reading = read_findings(text)
    negative = guidance.negative_for(text, reading, canonical=True, away_from="swapped")
    expected = canonical_text(read_findings("Small left pleural effusion."))
    assert negative == guidance.Negative(expected, expected, "swapped")  # the app's own words, as they are
    assert "Small left pleural effusion" in negative.text and "No pneumothorax" in negative.text


def test_a_small_effusions_canonical_negative_states_no_effusion_and_swaps_the_rest():
    text = "Small right effusion. Left PTX. RUL consolidation."
    reading = read_findings(text)
    negative = guidance.negative_reading(reading)
    assert negative.states == {**reading.states, "effusion": "none"}
    assert negative.attributes == {
        "effusion_side": "none",
        "effusion_size": "none",
        "pneumothorax_side": "right",
        "consolidation_zone": "left lower",
    }
    said = guidance.negative_for(text, reading, canonical=True, away_from="swapped").text
    assert said == canonical_text(read_findings("Right pneumothorax. Consolidation in the left lower zone."))
    alone = read_findings("Trace bilateral effusions.")  # no side to swap, yet guided: towards drawing it
    assert guidance.negative_for("x", alone, True, "swapped").text == guidance.NORMAL_TEXT
    large = read_findings("Large bilateral effusions.")
    assert guidance.negative_reading(large) == guidance.swapped_reading(large)  # only small ones
    hedged = read_findings("Possible small right effusion.")  # not drawn, so nothing to push towards
    assert guidance.negative_reading(hedged) == guidance.swapped_reading(hedged)
    typed = guidance.negative_for("Small R effusion.", reading, canonical=False, away_from="swapped")
    assert typed.text == "Large L effusion."  # a model given the text as typed: its words swapped


def test_an_as_typed_negative_swaps_the_users_words_and_records_only_a_description():
    text = "Patient Smith: large right effusion."
    negative = guidance.negative_for(text, read_findings(text), canonical=False, away_from="swapped")
    assert negative.text == "Patient Smith: small left effusion."
    assert negative.record == guidance.SWAPPED_AS_TYPED and "Smith" not in negative.record


def test_a_side_reading_leaves_out_the_findings_stated_on_the_other_side_only():
    reading = read_findings(
        "Large right effusion. Left pneumothorax. Consolidation in the left upper zone. Cardiomegaly."
    )
    right, left = guidance.side_reading(reading, "right"), guidance.side_reading(reading, "left")
    assert right == read_findings("Large right effusion. Cardiomegaly.")  # as if the text said only that
    assert left == read_findings("Left pneumothorax. Consolidation in the left upper zone. Cardiomegaly.")
    both = read_findings("Bilateral effusions. Pneumothorax.")  # no side stated for the pneumothorax
    assert guidance.side_reading(both, "right") == guidance.side_reading(both, "left") == both
    negated = read_findings("No right pneumothorax. Left effusion.")  # a negated finding is not moved
    assert guidance.side_reading(negated, "right").states["pneumothorax"] == "absent"


def test_sides_draws_each_half_from_its_own_findings_and_falls_back_to_swapped():
    text = "Massive R effusion, small left PTX."
    reading = read_findings(text)
    sides = guidance.negative_for(text, reading, canonical=True, away_from="sides")
    right = canonical_text(read_findings("Large right pleural effusion."))
    left = canonical_text(read_findings("Small left pneumothorax."))
    assert (sides.right, sides.text, sides.away_from) == (right, left, "sides")
    assert sides.record == f"right half: {right} | left half: {left}"  # the app's own words only
    small = ("Small right effusion.", "Small L effusion, cardiomegaly.")  # split, a small one went undrawn
    for no_side in (
        "Cardiomegaly. Small bilateral effusions.",
        "Large right effusion? Probably not.",
        *small,
    ):
        r = read_findings(no_side)  # nothing on one side only: the swapped negative (or none)
        assert guidance.negative_for(no_side, r, True, "sides") == guidance.negative_for(
            no_side, r, True, "swapped"
        )
    with_ptx = read_findings("Small right effusion. Left PTX.")  # something else on one side: split
    split = guidance.negative_for("x", with_ptx, True, "sides")
    assert split.right == canonical_text(read_findings("Small right pleural effusion."))
    typed = guidance.negative_for(text, reading, canonical=False, away_from="sides")
    assert typed == guidance.Negative(
        "Tiny L effusion, large right PTX.", guidance.SWAPPED_AS_TYPED, "swapped"
    )


@pytest.mark.parametrize("canonical", [True, False])
def test_nothing_stated_to_swap_gives_no_negative_but_normal_always_does(canonical):
    text = "Cardiomegaly with pulmonary oedema."
    reading = read_findings(text)
    assert guidance.negative_for(text, reading, canonical, "swapped") is None
    assert guidance.negative_for(text, reading, canonical, "sides") is None
    normal = guidance.negative_for(text, reading, canonical, "normal")
    assert normal.text == normal.record == guidance.NORMAL_TEXT == canonical_text(read_findings(""))
    with pytest.raises(ValueError, match="Unknown guide_away_from"):
        guidance.negative_for(text, reading, canonical, "mirror")


def test_plan_takes_the_checkpoints_scale_when_unset_and_says_what_it_did():
    text = "Large left effusion."
    reading = read_findings(text)
    sampling, negative, said = guidance.plan(SamplingConfig(seed=1), 2.0, text, reading, True)
    assert sampling.guidance == 2.0 and sampling.seed == 1 and negative is not None
    assert said == {
        "guided_away_from": "sides",
        "guidance_negative": negative.record,
        "guidance_skipped": None,
    }
    swapped = SamplingConfig(seed=1, guide_away_from="swapped")
    _, negative, said = guidance.plan(swapped, 2.0, text, reading, True)
    assert said["guided_away_from"] == "swapped" and said["guidance_negative"] == negative.text
    both = read_findings("Large bilateral effusions.")  # "sides" with nothing on one side: says "swapped"
    assert guidance.plan(SamplingConfig(), 2.0, "x", both, True)[2]["guided_away_from"] == "swapped"
    sampling, negative, said = guidance.plan(SamplingConfig(guidance=1.0), 2.0, text, reading, True)
    assert sampling.guidance == 1.0 and negative is None and set(said.values()) == {None}  # the user's 1
    unset = SamplingConfig()
    assert guidance.plan(unset, 1.0, text, reading, True)[0].guidance == 1.0  # a checkpoint without a scale
    nothing = read_findings("Cardiomegaly.")
    sampling, negative, said = guidance.plan(
        SamplingConfig(guidance=3.0), 1.0, "Cardiomegaly.", nothing, True
    )
    assert sampling.guidance == 1.0 and negative is None  # ran unguided...
    assert (
        said["guidance_skipped"] == guidance.NOTHING_TO_SWAP and said["guided_away_from"] is None
    )  # ...and says why


def test_sampling_refuses_an_unknown_negative():
    with pytest.raises(ValueError, match="guide_away_from must be one of sides, swapped, normal"):
        SamplingConfig(guide_away_from="mirror")
    assert SamplingConfig().guidance is None and SamplingConfig().guide_away_from == "sides"


def test_describe_says_how_a_drawing_was_guided_or_why_not():
    def provenance(**drawn) -> dict:
        return {"sampling": {"guidance": drawn.pop("scale", 1.0)}, **drawn}

    assert guidance.describe(provenance()) is None  # unguided, as asked
    sides = provenance(scale=2.0, guided_away_from="sides")
    assert guidance.describe(sides) == "guidance 2 (away from the other lung's findings)"
    swapped = provenance(scale=2.0, guided_away_from="swapped")
    assert guidance.describe(swapped) == "guidance 2 (away from the other side, size and zone)"
    normal = provenance(scale=1.5, guided_away_from="normal")
    assert guidance.describe(normal) == "guidance 1.5 (away from a normal chest)"
    skipped = provenance(guided_away_from=None, guidance_skipped=guidance.NOTHING_TO_SWAP)
    assert guidance.describe(skipped) == "unguided (no side, size or zone stated to guide by)"

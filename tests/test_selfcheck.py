"""Draw self-check: comparing a read-back report with the findings asked for, choosing among candidates,
and reading a drawing back through the real demo model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from llmcxr_app import protocol
from llmcxr_app.config import DEMO_MODEL, RuntimeConfig, Settings, resolve_location
from llmcxr_app.studio import selfcheck
from llmcxr_app.studio.facade import Result, Studio

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _result(codes: list[int] | None, image: Image.Image | None) -> Result:
    return Result(protocol.TASK_DRAW, "", image, codes, None, {}, {})


def test_a_read_back_that_states_the_same_findings_agrees():
    got = selfcheck.compare(
        "Large right pleural effusion. Pacemaker in place.",
        "There is a large right pleural effusion. No pneumothorax. A pacemaker is present. Heart size normal.",
    )
    assert got.asked == got.seen == ("effusion", "pacemaker")
    assert got.matches and got.agreeing_labels == 7
    assert set(got.attributes_matched) == {"effusion_side", "effusion_size"}
    assert got.summary() == "agrees (pleural effusion, pacemaker)"


def test_missing_extra_and_wrong_side_are_each_reported():
    got = selfcheck.compare(
        "Right pneumothorax. Cardiomegaly.", "Left pneumothorax. Small left pleural effusion."
    )
    assert got.missing == ("cardiomegaly",) and got.extra == ("effusion",)
    assert got.attributes_differing == ("pneumothorax_side: asked right, seen left",)
    assert not got.matches and got.agreeing_labels == 5
    summary = got.summary()
    for part in (
        "sees pneumothorax",
        "misses cardiomegaly",
        "also sees pleural effusion",
        "asked right, seen left",
    ):
        assert part in summary


def test_a_normal_request_and_a_normal_read_back_agree():
    got = selfcheck.compare("No acute cardiopulmonary abnormality.", "No pleural effusion or pneumothorax.")
    assert got.matches and got.asked == got.seen == ()
    assert "no finding asked" in got.summary()


def test_best_prefers_presence_then_attributes_then_the_earliest():
    asked = "Large left pleural effusion. Endotracheal tube."
    wrong_side = selfcheck.compare(asked, "Large right pleural effusion. Endotracheal tube in place.")
    right = selfcheck.compare(asked, "Large left pleural effusion. Endotracheal tube in place.")
    missing_tube = selfcheck.compare(asked, "Large left pleural effusion.")
    assert selfcheck.best([missing_tube, wrong_side, right]) == 2
    assert selfcheck.best([missing_tube, wrong_side]) == 1  # presence outranks side
    assert selfcheck.best([right, right]) == 0  # ties keep the user's own seed, which comes first
    with pytest.raises(ValueError):
        selfcheck.best([])
    assert selfcheck.verdict([missing_tube, wrong_side, right]).startswith(
        "Self-check (the model reading its own drawings): candidate 3 agrees best (agrees ("
    )
    assert selfcheck.verdict([missing_tube]) == (
        "Self-check (the model reading its own drawing): sees pleural effusion; misses endotracheal tube."
    )


def test_only_finished_drawings_can_be_read_back():
    with pytest.raises(ValueError, match="finished drawing"):
        selfcheck.as_prepared(_result(None, None))
    image = Image.new("L", (32, 32), 90)
    prepared = selfcheck.as_prepared(_result(list(range(16)), image))
    assert prepared.codes == list(range(16)) and prepared.model_input.mode == "RGB"
    assert prepared.crop_box == (0.0, 0.0, 32.0, 32.0)


def test_check_reads_the_codes_with_the_model(monkeypatch):
    """The demo model reads a held-out example's own codes, given as a drawing, and agrees with its findings."""
    for var in ("LLMCXR_LLM", "LLMCXR_VQGAN_CONFIG", "LLMCXR_VQGAN_CKPT"):
        monkeypatch.delenv(var, raising=False)
    if resolve_location() != DEMO_MODEL:
        pytest.skip("official weights are installed in weights/official; the default is not the demo model")
    studio = Studio.from_settings(
        Settings(model=DEMO_MODEL, runtime=RuntimeConfig(device="cpu", fast_path=False, warmup=False))
    )
    prepared = studio.prepare(Image.open(EXAMPLES / "effusion_right_large.png"))
    drawing = _result(prepared.codes, prepared.reconstruction)
    got = selfcheck.check(studio, "Large right pleural effusion.", drawing)
    assert got.read_back and got.matches, got.read_back
    missed = selfcheck.check(studio, "Left pneumothorax. Cardiomegaly.", drawing)
    assert missed.read_back == got.read_back  # greedy: the same codes give the same report
    assert set(missed.missing) == {"pneumothorax", "cardiomegaly"} and missed.extra == ("effusion",)


def test_hedged_findings_are_neither_agreement_nor_miss():
    from llmcxr_app.studio.selfcheck import compare

    a = compare(
        "Small left pleural effusion. Possible right lower lobe pneumonia.", "Small left pleural effusion."
    )
    assert a.uncertain == ("consolidation",) and a.missing == () and a.extra == ()
    assert a.matches and a.summary() == "agrees (pleural effusion); hedged, not scored: consolidation"
    assert a.agreeing_labels == 6  # 7 labels, the hedged one left out
    b = compare("No pneumothorax.", "Question of a small pneumothorax.")
    assert b.uncertain == ("pneumothorax",) and not b.extra and b.as_dict()["uncertain"] == ["pneumothorax"]

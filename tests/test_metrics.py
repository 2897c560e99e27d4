"""Scores of the demo evaluation (demo/metrics.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmcxr_app.demo.data.phantoms import Findings
from llmcxr_app.demo.evaluate import metrics


def test_prf_matches_hand_computed_values():
    # a: tp 1 (item 0), fn 1 (item 1), fp 1 (item 2) -> P 1/2, R 1/2, F1 1/2, support 2.
    # b: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3, support 1.  c: never true, never predicted -> undefined.
    truth = [
        {"a": 1, "b": 1, "c": 0},
        {"a": 1, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
    ]
    pred = [
        {"a": 1, "b": 1, "c": 0},
        {"a": 0, "b": 1, "c": 0},
        {"a": 1, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
    ]
    to_bool = lambda rows: [{k: bool(v) for k, v in r.items()} for r in rows]  # noqa: E731
    out = metrics.prf(to_bool(pred), to_bool(truth), labels=("a", "b", "c"))
    a, b, c = (out["per_label"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == (0.5, 0.5, 0.5, 2)
    assert (b["precision"], b["recall"], b["support"]) == (0.5, 1.0, 1)
    assert b["f1"] == pytest.approx(2 / 3)
    assert c == {"precision": None, "recall": None, "f1": None, "support": 0, "uncertain": 0}
    # micro pools the counts: tp 2, fp 2, fn 1 -> P 1/2, R 2/3, F1 4/7; macro averages the defined F1s.
    m = out["micro"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 7)
    assert out["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        metrics.prf(to_bool(pred[:2]), to_bool(truth), labels=("a",))


def test_prf_perfect_and_all_wrong():
    truth = [f.label_vector() for f in (Findings(cardiomegaly=True), Findings(edema=True, ett=True))]
    assert metrics.prf(truth, truth)["micro"]["f1"] == 1.0
    flipped = [{k: not v for k, v in t.items()} for t in truth]
    assert metrics.prf(flipped, truth)["micro"]["f1"] == 0.0


def test_answers_match_normalises_like_the_labeler():
    assert metrics.answers_match("Yes, there is.", "Yes.")
    assert metrics.answers_match("large", "Large.")
    assert metrics.answers_match("Right upper zone.", "right upper zone")
    assert not metrics.answers_match("Left.", "Right.")
    assert not metrics.answers_match("No.", "Yes.")


def test_reconstruction_error_known_values():
    a = np.zeros((8, 8), np.uint8)
    b = np.full((8, 8), 51, np.uint8)  # 51/255 = 0.2 -> MSE 0.04 -> PSNR 10 log10(25)
    mae, psnr = metrics.reconstruction_error(a, b)
    assert mae == pytest.approx(0.2) and psnr == pytest.approx(10 * math.log10(25))
    assert metrics.reconstruction_error(a, a) == (0.0, pytest.approx(100.0))  # finite: the JSON stays valid


def test_report_attributes_score_only_present_findings():
    truths = [
        Findings(effusion="left", effusion_size="small"),
        Findings(pneumothorax="right"),
        Findings(effusion="bilateral", effusion_size="large"),
        Findings(),
    ]
    texts = [
        "Small left pleural effusion.",
        "Left pneumothorax.",  # found, but on the wrong side
        "No pleural effusion.",  # missed: its side and size are wrong, not skipped
        "Right pneumothorax.",  # a false positive has no true side to score against
    ]
    out = metrics.report_attributes(texts, truths)
    effusion_side = {"left": {"left": 1}, "bilateral": {"none": 1}}  # what each true side was read as
    assert out["effusion_side"] == {"accuracy": 0.5, "n": 2, "read_as": effusion_side}
    assert out["effusion_size"] == {
        "accuracy": 0.5,
        "n": 2,
        "read_as": {"small": {"small": 1}, "large": {"none": 1}},
    }
    assert out["pneumothorax_side"] == {"accuracy": 0.0, "n": 1, "read_as": {"right": {"left": 1}}}
    assert out["consolidation_zone"] == {"accuracy": None, "n": 0, "read_as": {}}


def test_ratio_is_undefined_on_an_empty_denominator():
    assert metrics.ratio(1, 4) == 0.25 and metrics.ratio(0, 0) is None


def test_prf_leaves_hedged_predictions_out():
    from llmcxr_app.demo.evaluate.metrics import prf

    truth = [{"a": True}, {"a": False}, {"a": True}]
    out = prf([{"a": True}, {"a": None}, {"a": None}], truth, labels=("a",))
    per = out["per_label"]["a"]
    assert per["precision"] == 1.0 and per["recall"] == 1.0 and per["uncertain"] == 2
    assert (
        prf([{"a": False}, {"a": True}, {"a": None}], truth, labels=("a",))["per_label"]["a"]["recall"] == 0.0
    )

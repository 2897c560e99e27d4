"""studio/template_text.py: the template language shared by the demo generator and the app's canonical prompts."""

from __future__ import annotations

import numpy as np
import pytest

from llmcxr_app.demo.data import reports
from llmcxr_app.demo.data.findings import Findings, sample_findings
from llmcxr_app.studio import template_text
from llmcxr_app.studio.labeler import LABELS, read_states


def test_the_generator_still_writes_the_text_the_shipped_model_was_trained_on():
    # Recorded before the wording moved here from demo/data/reports.py (6000 seeds compared byte for byte
    # then): the same seed must keep giving the same training text, choice for choice.
    rng = np.random.default_rng(1)
    f = sample_findings(rng)
    assert f == Findings(cardiomegaly=True, ett=True, pacemaker=True)
    assert reports.write_report(f, rng) == (
        "FINDINGS: Endotracheal tube tip terminates above the carina. Pacemaker over the left chest with a "
        "single lead in the right ventricle. Cardiomegaly is present. Mediastinal contours are normal. There "
        "is no consolidation or edema. No pleural effusion or pneumothorax. IMPRESSION: Cardiomegaly. Support "
        "devices as described."
    )
    assert reports.write_findings_prompt(f, rng).startswith("FINDINGS: The endotracheal tube ends above")
    rng = np.random.default_rng(2)
    f = sample_findings(rng)
    assert reports.write_report(f, rng) == (
        "FINDINGS: The heart is normal in size. Mediastinal contours are normal. Lungs are clear without focal "
        "consolidation. There is a right pneumothorax. There is no pleural effusion. No acute osseous "
        "abnormality. IMPRESSION: Right pneumothorax."
    )


def test_first_wording_is_deterministic_and_takes_the_likelier_optional_sentence():
    f = Findings(consolidation="left upper", pneumothorax="left")
    one = template_text.report(f.label_vector(), f.attributes())
    assert one == template_text.report(f.label_vector(), f.attributes(), template_text.FIRST)
    assert one == (
        "FINDINGS: Heart size is normal. Mediastinal contours are normal. There is consolidation in the left "
        "upper zone. No pulmonary edema. Left pneumothorax with a visible pleural line. No pleural effusion. "
        "IMPRESSION: Left pneumothorax. Left upper zone consolidation."
    )
    assert "osseous" not in one  # the bones sentence has probability 0.5: not likelier than not


@pytest.mark.parametrize("seed", range(40))
def test_the_labeler_reads_every_first_wording_report_back_exactly(seed):
    f = sample_findings(np.random.default_rng([seed, 77]))
    states, attributes = read_states(template_text.report(f.label_vector(), f.attributes()))
    assert {lab: s == "present" for lab, s in states.items()} == f.label_vector()
    assert attributes == f.attributes()


def test_unstated_attributes_are_left_out_and_read_back_as_unstated():
    present = {lab: lab in ("effusion", "pneumothorax", "consolidation") for lab in LABELS}
    unstated = dict.fromkeys(("effusion_side", "effusion_size", "pneumothorax_side", "consolidation_zone"))
    text = template_text.report(present, unstated)
    assert "Pleural effusion." in text and "Pneumothorax with a visible pleural line." in text
    assert "There is consolidation." in text
    assert template_text.phrases(present, unstated) == [
        "Pleural effusion.",
        "Pneumothorax.",
        "Consolidation.",
    ]
    states, attributes = read_states(text)
    assert [lab for lab in LABELS if states[lab] == "present"] == [
        "effusion",
        "pneumothorax",
        "consolidation",
    ]
    assert attributes == unstated


def test_describe_names_each_finding_with_its_stated_attributes():
    attrs = {"effusion_side": "bilateral", "effusion_size": "small", "pneumothorax_side": "none"}
    assert template_text.describe("effusion", attrs) == "small bilateral pleural effusions"
    assert template_text.describe("effusion", {"effusion_side": "left"}) == "left pleural effusion"
    assert template_text.describe("edema", {}) == "pulmonary edema"
    assert template_text.describe("ett", {}) == "endotracheal tube"
    assert template_text.describe("consolidation", {"consolidation_zone": "right lower"}) == (
        "right lower zone consolidation"
    )

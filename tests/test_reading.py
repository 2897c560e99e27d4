"""studio/reading.py: the labeler's reading of a findings text, and the template report a canonical model gets."""

from __future__ import annotations

from llmcxr_app.studio.reading import NOTHING_READ, canonical_text, read_findings


def test_a_clinicians_shorthand_becomes_the_template_report_of_what_it_states():
    reading = read_findings("Massive R effusion, no PTX.")
    assert [lab for lab, on in reading.present.items() if on] == ["effusion"]
    assert reading.attributes["effusion_side"] == "right" and reading.attributes["effusion_size"] == "large"
    text = canonical_text(reading)
    assert text.startswith("FINDINGS: Heart size is normal.")
    assert "Large right pleural effusion." in text and "No pneumothorax." in text
    assert text.endswith("IMPRESSION: Large right pleural effusion.")
    assert reading.summary() == "large right pleural effusion"


def test_a_hedged_finding_is_not_drawn_and_the_user_is_told():
    reading = read_findings("Cardiomegaly. Possible left pleural effusion.")
    assert reading.hedged == ("effusion",)
    text = canonical_text(reading)
    assert "The heart is enlarged." in text and "No pleural effusion" in text
    assert reading.summary() == "cardiomegaly; hedged, not drawn: pleural effusion"


def test_nothing_the_model_draws_gives_the_normal_report():
    for text in ("NAD.", "Rib fracture.", "No acute cardiopulmonary process."):
        reading = read_findings(text)
        assert not any(reading.present.values()) and reading.summary() == NOTHING_READ
        assert canonical_text(reading).endswith("IMPRESSION: No acute cardiopulmonary process.")


def test_several_findings_and_devices_keep_their_zone_and_devices():
    reading = read_findings("ETT and pacer in situ. RLL consolidation. Pulmonary oedema.")
    text = canonical_text(reading)
    assert text.startswith(
        "FINDINGS: Endotracheal tube tip terminates above the carina. Left chest wall pacemaker"
    )
    assert "There is consolidation in the right lower zone." in text and "pulmonary edema" in text
    assert text.endswith("Right lower zone consolidation. Pulmonary edema. Support devices as described.")

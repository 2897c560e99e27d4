"""Auto routing of pasted findings (README "Auto mode routing"): drawn without an X-ray, asked about with one."""

import pytest

from llmcxr_app.protocol import TASK_DRAW, TASK_INSTRUCT, TASK_REPORT, TASK_VQA
from llmcxr_app.ui.routing import TASK_AMBIGUOUS, describes_findings, findings_only, route

PASTED = (
    "Findings: Heart size is normal. There is a small left pleural effusion with adjacent atelectasis. "
    "No pneumothorax."
)


@pytest.mark.parametrize(
    ("text", "has_image", "task"),
    [
        (PASTED, False, TASK_DRAW),
        (PASTED, True, TASK_AMBIGUOUS),
        ("IMPRESSION: No acute cardiopulmonary process.", False, TASK_DRAW),  # a header, no finding read
        ("No pneumothorax.", False, TASK_DRAW),  # an absent finding still describes findings
        ("Large left pleural effusion.", True, TASK_AMBIGUOUS),
        ("Draw a chest X-ray with a large left pleural effusion.", True, TASK_DRAW),  # says so
        ("Is there a pneumothorax?", True, TASK_VQA),
        ("Is there a pneumothorax?", False, TASK_INSTRUCT),  # a question, not findings
        ("What is a pleural effusion", False, TASK_INSTRUCT),
        ("Describe this X-ray", True, TASK_REPORT),
        ("Hello, how are you?", False, TASK_INSTRUCT),
        ("Hello, how are you?", True, TASK_VQA),
        ("INDICATION: Rule out pneumothorax.", False, TASK_INSTRUCT),  # the question of a study, no finding
    ],
)
def test_auto_routes_pasted_findings(text, has_image, task):
    plan = route("Auto", text, has_image, has_image)
    assert plan.task == task
    if task in (TASK_DRAW, TASK_AMBIGUOUS) and not text.startswith("Draw"):
        assert plan.text == text  # the whole report is the findings


def test_explicit_modes_override_auto():
    assert route("Ask", PASTED, False, True).task == TASK_VQA
    assert route("Draw", PASTED, False, True).task == TASK_DRAW


def test_describes_findings():
    assert describes_findings(PASTED)
    assert describes_findings("Heart size is normal.")
    assert not describes_findings("Does this patient have cardiomegaly?")
    assert not describes_findings("Tell me a joke.")


def test_mode_label_redo_choices_and_clicked_choices():
    from llmcxr_app.studio.errors import StudioInputError
    from llmcxr_app.ui.routing import CHOICES, chosen_mode, mode_label, redo_choices

    assert mode_label("Auto", TASK_DRAW) == "Mode: Draw (auto)"
    assert mode_label("Ask", TASK_INSTRUCT) == "Mode: Ask (no X-ray)"
    assert redo_choices(TASK_VQA, has_image=True) == ["Redo as Draw", "Redo as Report"]
    assert redo_choices(TASK_DRAW, has_image=False) == ["Redo as Ask"]
    assert redo_choices(TASK_REPORT, has_image=True, has_text=False) == []
    assert [chosen_mode(c) for c in CHOICES] == ["Draw", "Ask"]
    assert chosen_mode("Redo as Report") == "Report"
    with pytest.raises(StudioInputError):
        chosen_mode("Redo as Dance")


def test_pasted_reports_are_drawn_from_their_findings_only():
    report = "INDICATION: Cough, evaluate for pneumonia.\nCOMPARISON: None.\nFINDINGS: Small left effusion."
    plan = route("Auto", report, False, False)
    assert plan.task == TASK_DRAW and plan.text == "FINDINGS: Small left effusion."
    assert findings_only("History of CHF. Mild edema.") == "History of CHF. Mild edema."  # no header: as is
    assert findings_only("CLINICAL HISTORY: CHF.") == "CLINICAL HISTORY: CHF."  # nothing else: as is

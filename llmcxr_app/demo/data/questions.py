"""VQA questions about a phantom in many phrasings (yes/no, which side, how big, which zone, devices).

The answers are the template answers of reports.answer (the form the model writes and the evaluation
parses), so only the questions vary: synonyms and abbreviations of each finding, terse and full forms,
case and punctuation, an occasional typo.
"""

from __future__ import annotations

import numpy as np

from llmcxr_app.demo.data.findings import Findings
from llmcxr_app.demo.data.language import pick, surface
from llmcxr_app.demo.data.reports import answer

# How a question names each finding (with its article where it takes one).
NAMES = {
    "cardiomegaly": ("cardiomegaly", "an enlarged heart", "cardiac enlargement", "cardiomeg.", "a big heart"),
    "effusion": (
        "a pleural effusion",
        "an effusion",
        "pleural fluid",
        "an eff.",
        "a pleural eff",
        "fluid in the pleural space",
    ),
    "pneumothorax": ("a pneumothorax", "a PTX", "ptx", "a pneumothorax", "a PNX", "a collapsed lung"),
    "consolidation": ("consolidation", "pneumonia", "an airspace opacity", "a focal opacity", "consol."),
    "edema": ("pulmonary edema", "oedema", "fluid overload", "interstitial edema", "Kerley B lines"),
    "ett": ("an ETT", "an endotracheal tube", "an ET tube", "a breathing tube", "a tube in the trachea"),
    "pacemaker": ("a pacemaker", "a PPM", "a pacer", "a cardiac device", "a pacing device"),
}
PRESENCE = (
    "Is there {}?",
    "Any {}?",
    "{}?",
    "Do you see {}?",
    "Can you see {}?",
    "Is there evidence of {}?",
    "Does this film show {}?",
    "Any sign of {}",
    "Is there {} on this CXR?",
    "Does the patient have {}?",
    "Please check for {}.",
    "is there {} or not",
)
PRESENCE_SPECIAL = {
    "cardiomegaly": (
        "Is the heart enlarged?",
        "Is the heart big?",
        "Heart enlarged?",
        "Is the CTR increased?",
    ),
    "ett": ("Is the patient intubated?", "Intubated?", "Is the pt intubated?"),
    "pacemaker": ("Does the pt have a pacemaker?", "Is there a PPM in situ?"),
}
SIDE = (
    "Which side is the {}?",
    "Left or right {}?",
    "What side is the {} on?",
    "Side of the {}?",
    "Is the {} on the left or the right?",
    "Where is the {}?",
    "{} - which side?",
    "Which hemithorax has the {}?",
)
SIDE_NOUN = {
    "effusion": ("effusion", "pleural effusion", "eff.", "pleural fluid"),
    "pneumothorax": ("pneumothorax", "PTX", "ptx", "pneumothorax"),
}
SIZE = (
    "How big is the effusion?",
    "Size of the effusion?",
    "Is the effusion small or large?",
    "How large is the pleural effusion?",
    "Effusion size?",
    "How much pleural fluid is there?",
    "how big is the eff",
    "Is the pleural effusion small or big?",
)
ZONE = (
    "Which zone is the consolidation in?",
    "Where is the consolidation?",
    "Which lobe is affected?",
    "Where is the pneumonia?",
    "Location of the opacity?",
    "Which part of the lung is consolidated?",
    "Where is the airspace disease?",
    "consolidation - which zone?",
)
HEART = (
    "Heart size?",
    "How is the heart size?",
    "What about the heart size?",
    "Comment on the cardiac size.",
)
# Questions whose "yes" means the finding is absent. Written for the validation split only: make_rich_qa
# never asks them, so no training example holds one (the template pool has none either).
ABSENCE = {
    "cardiomegaly": (
        "Is the heart size normal?",
        "Normal heart size?",
        "Is the cardiac silhouette normal?",
        "Heart size within normal limits?",
    ),
    "effusion": (
        "Are the costophrenic angles clear?",
        "CP angles sharp?",
        "Can an effusion be excluded?",
        "No effusion?",
    ),
    "pneumothorax": (
        "No PTX?",
        "Can a pneumothorax be excluded?",
        "Is a pneumothorax ruled out?",
        "Is there no pneumothorax?",
    ),
    "consolidation": (
        "Are the lungs clear?",
        "Lungs clear?",
        "Can pneumonia be excluded?",
        "No consolidation?",
    ),
    "edema": (
        "Is the pulmonary vasculature normal?",
        "No oedema?",
        "Can pulmonary edema be ruled out?",
        "Is the patient free of pulmonary edema?",
    ),
    "ett": ("Is the patient extubated?", "No ETT?", "Is an endotracheal tube absent?", "No ET tube?"),
    "pacemaker": ("No pacemaker?", "Is a pacemaker absent?", "Can a PPM be excluded?", "No pacer?"),
}
DEVICES = (
    "Any lines or tubes?",
    "What devices are present?",
    "Lines/tubes?",
    "Which devices do you see?",
    "Any support devices?",
    "Any hardware?",
    "List the lines and devices.",
)


def question(kind: str, label: str, rng: np.random.Generator) -> str:
    """A question of `kind` (presence | side | size | zone | heart | devices) about `label`."""
    if kind == "presence":
        if label in PRESENCE_SPECIAL and rng.random() < 0.3:
            return pick(rng, PRESENCE_SPECIAL[label])
        q = pick(rng, PRESENCE).format(pick(rng, NAMES[label]))
        return q[:1].upper() + q[1:]
    if kind == "side":
        return pick(rng, SIDE).format(pick(rng, SIDE_NOUN[label]))
    table = {"size": SIZE, "zone": ZONE, "heart": HEART, "devices": DEVICES}
    if kind not in table:
        raise ValueError(f"unknown question kind {kind!r}")
    return pick(rng, table[kind])


def _kind_for(label: str, present: bool, rng: np.random.Generator) -> str:
    """Presence mostly; side / size / zone for the findings that have one (asked of absent ones too)."""
    extra = {"effusion": ("side", "size"), "pneumothorax": ("side",), "consolidation": ("zone",)}.get(
        label, ()
    )
    if extra and rng.random() < (0.5 if present else 0.2):
        return pick(rng, extra)
    return "presence"


def make_rich_qa(f: Findings, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """n (question, answer) pairs about `f`, alternating present and absent findings where both exist."""
    vector = f.label_vector()
    present = [lab for lab, on in vector.items() if on]
    absent = [lab for lab, on in vector.items() if not on]
    out = []
    for i in range(n):
        if rng.random() < 0.12:
            kind, label = pick(rng, ("heart", "devices")), "cardiomegaly"
            label = "cardiomegaly" if kind == "heart" else "devices"
        else:
            want_present = (i % 2 == 0) if present and absent else bool(present)
            label = pick(rng, present if want_present else absent)
            kind = _kind_for(label, want_present, rng)
        q = surface(question(kind, label, rng), rng)
        out.append((q, answer(kind, label, f)))
    return out


def absence_qa(f: Findings, rng: np.random.Generator) -> tuple[str, str, str]:
    """One question whose yes means a finding is absent, about a random finding of LABELS (present half
    the time when the phantom has one): (question, label, the true answer "yes" / "no")."""
    vector = f.label_vector()
    present = [lab for lab, on in vector.items() if on]
    absent = [lab for lab, on in vector.items() if not on]
    label = pick(rng, present if present and (not absent or rng.random() < 0.5) else absent)
    return surface(pick(rng, ABSENCE[label]), rng), label, "no" if vector[label] else "yes"

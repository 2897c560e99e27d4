"""The template language: the sentences the embedded demo model was trained on, one home for their wording.

The demo generator (demo/data/reports.py) writes its training reports and findings prompts with these
writers, choosing among the wordings at random; the app writes the same sentences, always choosing the
first wording, when it gives a template-trained model the labeler's reading of a user's findings
(studio/reading.py). A finding is described by the labeler's seven labels and four attributes
(effusion_side, effusion_size, pneumothorax_side, consolidation_zone): "none" when the finding is absent,
None when it is present but its side, size or zone is not stated (the sentence then leaves it out; the
generator always states it). Sides are the patient's. Pure functions; no model, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmcxr_app.studio.labeler import LABELS

Attributes = dict[str, "str | None"]  # attribute name -> value, "none" (absent) or None (not stated)


class Chooser(Protocol):
    """Where the writers' choices come from: at random (the generator) or fixed (the app)."""

    def pick(self, options: Sequence[str]) -> str: ...  # one of the wordings

    def chance(self, p: float) -> bool: ...  # whether an optional sentence with probability p is written


class FirstWording:
    """The app's fixed choices: the first wording, and an optional sentence when it is likelier than not."""

    def pick(self, options: Sequence[str]) -> str:
        return options[0]

    def chance(self, p: float) -> bool:
        return p > 0.5


FIRST = FirstWording()

# The VQA pool: (question, kind, label). kind: presence | side | size | zone | heart | devices.
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("Is there cardiomegaly?", "presence", "cardiomegaly"),
    ("Is the heart enlarged?", "presence", "cardiomegaly"),
    ("Does the patient have cardiomegaly?", "presence", "cardiomegaly"),
    ("Is there a pleural effusion?", "presence", "effusion"),
    ("Does the patient have a pleural effusion?", "presence", "effusion"),
    ("Is there any pleural fluid?", "presence", "effusion"),
    ("Is there a pneumothorax?", "presence", "pneumothorax"),
    ("Does the patient have a pneumothorax?", "presence", "pneumothorax"),
    ("Is there evidence of pneumothorax?", "presence", "pneumothorax"),
    ("Is there consolidation?", "presence", "consolidation"),
    ("Does the patient have consolidation?", "presence", "consolidation"),
    ("Is there any focal consolidation?", "presence", "consolidation"),
    ("Is there pulmonary edema?", "presence", "edema"),
    ("Does the patient have pulmonary edema?", "presence", "edema"),
    ("Are there signs of edema?", "presence", "edema"),
    ("Is there an endotracheal tube?", "presence", "ett"),
    ("Is the patient intubated?", "presence", "ett"),
    ("Is an endotracheal tube present?", "presence", "ett"),
    ("Is there a pacemaker?", "presence", "pacemaker"),
    ("Does the patient have a pacemaker?", "presence", "pacemaker"),
    ("Is a cardiac pacemaker present?", "presence", "pacemaker"),
    ("Which side is the pleural effusion on?", "side", "effusion"),
    ("On which side is the effusion?", "side", "effusion"),
    ("Which side is the pneumothorax on?", "side", "pneumothorax"),
    ("Where is the pneumothorax?", "side", "pneumothorax"),
    ("How large is the effusion?", "size", "effusion"),
    ("What is the size of the pleural effusion?", "size", "effusion"),
    ("Where is the consolidation?", "zone", "consolidation"),
    ("Which lung zone is consolidated?", "zone", "consolidation"),
    ("What is the heart size?", "heart", "cardiomegaly"),
    ("Which support devices are present?", "devices", "devices"),
)


def canonical_question(kind: str, label: str) -> str:
    """The first question of QUESTIONS with this kind and label (kind "heart" / "devices": the open ones)."""
    for question, k, lab in QUESTIONS:
        if k == kind and lab == label:
            return question
    raise ValueError(f"no template question of kind {kind!r} about {label!r}")


_ETT = (
    "Endotracheal tube tip terminates above the carina.",
    "An endotracheal tube is in place with the tip above the carina.",
    "The endotracheal tube ends above the carina.",
)
_PACEMAKER = (
    "Left chest wall pacemaker with lead in the right ventricle.",
    "A left-sided pacemaker is present with its lead in the right ventricle.",
    "Pacemaker over the left chest with a single lead in the right ventricle.",
)
_HEART_ENLARGED = (
    "The heart is enlarged.",
    "Cardiomegaly is present.",
    "The cardiac silhouette is enlarged.",
)
_HEART_NORMAL = ("Heart size is normal.", "The heart is normal in size.", "Normal heart size.")
_MEDIASTINUM = (
    "Mediastinal contours are normal.",
    "The mediastinum is not widened.",
    "Normal mediastinal contours.",
)
_EDEMA = (
    "Bilateral perihilar haziness with Kerley lines, consistent with pulmonary edema.",
    "There is pulmonary edema with perihilar haze.",
    "Perihilar haze and Kerley lines indicate pulmonary edema.",
)
_LUNGS_CLEAR = (
    "The lungs are clear.",
    "Lungs are clear without focal consolidation.",
    "No focal consolidation or pulmonary edema.",
    "There is no consolidation or edema.",
)
_NO_PLEURAL = (
    "No pleural effusion or pneumothorax.",
    "There is no pleural effusion or pneumothorax.",
    "No effusion or pneumothorax is seen.",
)
_BONES = ("The osseous structures are unremarkable.", "No acute osseous abnormality.")
_NAMES = {"ett": "endotracheal tube", "edema": "pulmonary edema"}  # words of a label when not its own


def cap(s: str) -> str:
    """``s`` with its first letter upper-case."""
    return s[:1].upper() + s[1:]


def stated(value: str | None) -> str | None:
    """An attribute's value when the text states one ("none" = the finding is absent, None = unstated)."""
    return None if value in (None, "none") else value


def describe(label: str, attributes: Attributes) -> str:
    """Lower-case words for one present finding with its stated attributes, e.g. "small right pleural effusion",
    "bilateral pleural effusions", "left pneumothorax", "right lower zone consolidation", "pacemaker".
    An attribute missing from ``attributes`` counts as unstated."""
    if label == "effusion":
        side, size = stated(attributes.get("effusion_side")), stated(attributes.get("effusion_size"))
        plural = "s" if side == "bilateral" else ""
        return " ".join(w for w in (size, side, f"pleural effusion{plural}") if w)
    if label == "pneumothorax":
        side = stated(attributes.get("pneumothorax_side"))
        return f"{side} pneumothorax" if side else "pneumothorax"
    if label == "consolidation":
        zone = stated(attributes.get("consolidation_zone"))
        return f"{zone} zone consolidation" if zone else "consolidation"
    return _NAMES.get(label, label)


def phrases(present: dict[str, bool], attributes: Attributes) -> list[str]:
    """One short sentence per present finding, in LABELS order: ["Large right pleural effusion.", "Pacemaker."]."""
    return [cap(describe(lab, attributes)) + "." for lab in LABELS if present[lab]]


def _devices_and_heart(present: dict[str, bool], choose: Chooser) -> list[str]:
    out = [choose.pick(_ETT)] if present["ett"] else []
    if present["pacemaker"]:
        out.append(choose.pick(_PACEMAKER))
    out.append(choose.pick(_HEART_ENLARGED if present["cardiomegaly"] else _HEART_NORMAL))
    out.append(choose.pick(_MEDIASTINUM))
    return out


def _consolidation(attributes: Attributes) -> tuple[str, ...]:
    zone = stated(attributes["consolidation_zone"])
    if zone is None:
        return ("There is consolidation.", "Focal consolidation.", "Consolidation is present.")
    return (
        f"There is consolidation in the {zone} zone.",
        f"Focal consolidation in the {zone} zone.",
        f"{cap(zone)} zone consolidation is present.",
    )


def _lungs(present: dict[str, bool], attributes: Attributes, choose: Chooser) -> list[str]:
    consolidation, edema = present["consolidation"], present["edema"]
    out = [choose.pick(_consolidation(attributes))] if consolidation else []
    if edema:
        out.append(choose.pick(_EDEMA))
    if not consolidation and not edema:
        out.append(choose.pick(_LUNGS_CLEAR))
    elif not consolidation and choose.chance(0.6):
        out.append(choose.pick(("No focal consolidation.", "There is no focal consolidation.")))
    elif not edema and choose.chance(0.6):
        out.append(choose.pick(("No pulmonary edema.", "There is no pulmonary edema.")))
    return out


def _pneumothorax(attributes: Attributes) -> tuple[str, ...]:
    side = stated(attributes["pneumothorax_side"])
    if side is None:
        return (
            "Pneumothorax with a visible pleural line.",
            "There is a pneumothorax.",
            "A pneumothorax is present.",
        )
    return (
        f"{cap(side)} pneumothorax with a visible pleural line.",
        f"There is a {side} pneumothorax.",
        f"A {side}-sided pneumothorax is present.",
    )


def _pleura(present: dict[str, bool], attributes: Attributes, choose: Chooser) -> list[str]:
    effusion, pneumothorax = present["effusion"], present["pneumothorax"]
    out = []
    if effusion:
        e = describe("effusion", attributes)
        plural = stated(attributes["effusion_side"]) == "bilateral"
        out.append(choose.pick((f"{cap(e)}.", f"There are {e}." if plural else f"There is a {e}.")))
    if pneumothorax:
        out.append(choose.pick(_pneumothorax(attributes)))
    if not effusion and not pneumothorax:
        out.append(choose.pick(_NO_PLEURAL))
    elif not effusion:
        out.append(choose.pick(("No pleural effusion.", "There is no pleural effusion.")))
    elif not pneumothorax:
        out.append(choose.pick(("No pneumothorax.", "There is no pneumothorax.")))
    return out


def impression(present: dict[str, bool], attributes: Attributes, choose: Chooser) -> str:
    """The impression: the present findings (pathologies first), else no acute process; devices noted."""
    order = ("effusion", "pneumothorax", "consolidation", "edema", "cardiomegaly")
    items = [cap(describe(lab, attributes)) + "." for lab in order if present[lab]]
    if not items:
        items.append(
            choose.pick(("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."))
        )
    if present["ett"] or present["pacemaker"]:
        items.append(choose.pick(("Support devices as described.", "Support devices in place.")))
    return " ".join(items)


def report(present: dict[str, bool], attributes: Attributes, choose: Chooser = FIRST) -> str:
    """A short report "FINDINGS: ... IMPRESSION: ..." with explicit negatives.

    Sentences come in a fixed order (devices, heart, mediastinum, lungs, pleura, bones); each wording is
    ``choose``'s, so the generator's seed, or FIRST, gives one report.
    """
    out = [
        *_devices_and_heart(present, choose),
        *_lungs(present, attributes, choose),
        *_pleura(present, attributes, choose),
    ]
    if choose.chance(0.5):
        out.append(choose.pick(_BONES))
    return f"FINDINGS: {' '.join(out)} IMPRESSION: {impression(present, attributes, choose)}"

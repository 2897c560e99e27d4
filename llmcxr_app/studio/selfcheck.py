"""Draw self-check: the model reads back the X-ray it drew, and the labeler compares that report with the
findings asked for.

LLM-CXR works in both directions, so a drawing can be checked by the same model that made it: its codes go
back in as the image of a CXR -> report request (greedy), and `labeler.py` reads both texts. The result
tells the user which requested findings the model itself can see in its drawing, which it cannot, and what
it sees that was not asked for; with several candidates, the best-agreeing one is named. It is the
model judging itself (no independent reader, no ground truth): a consistency check, not a validation.

Pure functions (`compare`, `best`, `as_prepared`) and one model call (`check`, through the Studio facade).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from llmcxr_app.config import SamplingConfig
from llmcxr_app.studio.facade import Studio
from llmcxr_app.studio.labeler import LABELS, read_states
from llmcxr_app.studio.types import PreparedImage, Result

READ_BACK_SAMPLING = SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=256, seed=0)  # greedy
_NAMES = {
    "cardiomegaly": "cardiomegaly",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "consolidation": "consolidation",
    "edema": "pulmonary oedema",
    "ett": "endotracheal tube",
    "pacemaker": "pacemaker",
}

COVERED = ", ".join(_NAMES[x] for x in LABELS)  # what the labeler reads, for the user


@dataclass(frozen=True)
class Agreement:
    """How a drawing's read-back report agrees with the findings text it was drawn from."""

    asked: tuple[str, ...]  # labels the findings text states as present (labeler.LABELS order)
    seen: tuple[str, ...]  # labels the read-back report states as present
    missing: tuple[str, ...]  # asked but not seen
    extra: tuple[str, ...]  # seen but not asked (findings not mentioned count as absent, as in a report)
    attributes_matched: tuple[str, ...]  # e.g. "effusion_side": stated in both texts, the same
    attributes_differing: tuple[str, ...]  # e.g. "effusion_side: asked right, seen left"
    read_back: str  # the model's report of its own drawing
    uncertain: tuple[str, ...] = ()  # labels hedged in either text: neither agreement nor a miss

    @property
    def agreeing_labels(self) -> int:
        """Labels (of the len(LABELS) the labeler reads) on which both texts agree, present or absent."""
        return len(LABELS) - len(self.missing) - len(self.extra) - len(self.uncertain)

    @property
    def key(self) -> tuple[int, int]:
        """Sort key, higher is better: presence first, then the side / size / zone of shared findings."""
        return self.agreeing_labels, len(self.attributes_matched) - len(self.attributes_differing)

    @property
    def matches(self) -> bool:
        """Every label agrees and no stated side / size / zone differs."""
        return not (self.missing or self.extra or self.attributes_differing)

    def as_dict(self) -> dict:
        """The self-check as stored in a drawing's provenance (downloads, CLI JSON)."""
        return {
            "method": "the model's greedy CXR->report of its own drawing, read by the labeler (negspacy NegEx; hedged findings not scored)",
            "agrees": self.matches,
            "asked": list(self.asked),
            "seen": list(self.seen),
            "missing": list(self.missing),
            "extra": list(self.extra),
            "uncertain": list(self.uncertain),
            "attributes_differing": list(self.attributes_differing),
            "read_back": self.read_back,
        }

    def summary(self) -> str:
        """One line for the user, e.g. "sees pleural effusion; misses pneumothorax"."""
        hedged = (
            "; hedged, not scored: " + ", ".join(_NAMES[x] for x in self.uncertain) if self.uncertain else ""
        )
        if self.matches:
            seen = ", ".join(_NAMES[x] for x in self.seen)
            return (f"agrees ({seen})" if seen else "agrees (no finding asked, none seen)") + hedged
        parts = []
        found = [x for x in self.asked if x in self.seen]
        if found:
            parts.append("sees " + ", ".join(_NAMES[x] for x in found))
        if self.missing:
            parts.append("misses " + ", ".join(_NAMES[x] for x in self.missing))
        if self.extra:
            parts.append("also sees " + ", ".join(_NAMES[x] for x in self.extra))
        if self.attributes_differing:
            parts.append("differs: " + "; ".join(a.replace("_", " ") for a in self.attributes_differing))
        return "; ".join(parts) + hedged


def compare(findings: str, read_back: str) -> Agreement:
    """Agreement of a read-back report with the findings text (both read by the labeler).

    A finding hedged in either text ("possible effusion") is left out of missing / extra: it is neither an
    agreement nor a miss."""
    (want, want_attr), (got, got_attr) = read_states(findings), read_states(read_back)
    hedged = tuple(x for x in LABELS if "uncertain" in (want[x], got[x]))
    asked = tuple(x for x in LABELS if want[x] == "present" and x not in hedged)
    seen = tuple(x for x in LABELS if got[x] == "present" and x not in hedged)
    matched, differing = [], []
    for name, value in want_attr.items():
        other = got_attr[name]
        if value in (None, "none") or other in (None, "none"):
            continue  # only attributes stated for a finding present in both texts are compared
        if value == other:
            matched.append(name)
        else:
            differing.append(f"{name}: asked {value}, seen {other}")
    return Agreement(
        asked=asked,
        seen=seen,
        missing=tuple(x for x in asked if x not in seen),
        extra=tuple(x for x in seen if x not in asked),
        attributes_matched=tuple(matched),
        attributes_differing=tuple(differing),
        read_back=read_back,
        uncertain=hedged,
    )


def best(agreements: Sequence[Agreement]) -> int:
    """Index of the best-agreeing candidate; ties go to the earliest (the user's seed comes first)."""
    if not agreements:
        raise ValueError("No candidates to choose from.")
    return max(range(len(agreements)), key=lambda i: (agreements[i].key, -i))


def verdict(checks: Sequence[Agreement]) -> str:
    """The self-check's sentence for the user: one drawing's agreement, or which of several agrees best."""
    if not checks:
        raise ValueError("No self-check to report.")
    if len(checks) == 1:
        return f"Self-check (the model reading its own drawing): {checks[0].summary()}."
    i = best(checks)
    return f"Self-check (the model reading its own drawings): candidate {i + 1} agrees best ({checks[i].summary()})."


def as_prepared(result: Result) -> PreparedImage:
    """A finished drawing as an input image: its own codes, so the read-back sees exactly what was drawn."""
    if result.codes is None or result.image is None:
        raise ValueError("Only a finished drawing (with codes and an image) can be read back.")
    image: Image.Image = result.image
    return PreparedImage(
        codes=list(result.codes),
        model_input=image.convert("RGB"),
        reconstruction=image.convert("L"),
        crop_box=(0.0, 0.0, float(image.width), float(image.height)),
        source=None,
    )


def check(studio: Studio, findings: str, result: Result, cancel: threading.Event | None = None) -> Agreement:
    """Read a finished drawing back with the model (greedy CXR -> report) and compare it with `findings`."""
    report = Studio.finish(studio.describe(as_prepared(result), sampling=READ_BACK_SAMPLING, cancel=cancel))
    return compare(findings, report.text)

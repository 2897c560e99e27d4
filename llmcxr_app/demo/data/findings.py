"""Ground-truth findings of a demo phantom: what it shows, and how findings are drawn at random.

Sides are the patient's ("right effusion" = opacity in the image-left lung base). Both the renderer
(phantoms.py) and the report writer (reports.py) read these; neither imports the other's module for them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from llmcxr_app.studio.guidance import UNDRAWN_SIZE, swap_words
from llmcxr_app.studio.labeler import (
    LABELS,  # the findings a phantom can carry are the ones the labeler reads
)

__all__ = ["EFFUSION_SIDES", "EFFUSION_SIZES", "LABELS", "SIDES", "ZONES", "Findings", "sample_findings"]

SIDES = ("left", "right")
EFFUSION_SIDES = ("left", "right", "bilateral")
EFFUSION_SIZES = ("small", "large")
ZONES = ("right upper", "right lower", "left upper", "left lower")


@dataclass(frozen=True)
class Findings:
    """Ground-truth labels of one phantom (sides are the patient's)."""

    cardiomegaly: bool = False  # cardiothoracic ratio ~0.58 instead of ~0.41
    effusion: str = "none"  # "none" | "left" | "right" | "bilateral"
    effusion_size: str = "none"  # "none" iff effusion == "none", else "small" | "large"
    pneumothorax: str = "none"  # "none" | "left" | "right"
    consolidation: str = "none"  # "none" | one of ZONES
    edema: bool = False  # bilateral perihilar haze + Kerley lines
    ett: bool = False  # endotracheal tube
    pacemaker: bool = False  # left chest wall generator with a lead to the right ventricle

    def __post_init__(self) -> None:
        if self.effusion not in ("none", *EFFUSION_SIDES):
            raise ValueError(f"effusion must be none/left/right/bilateral, got {self.effusion!r}")
        if (self.effusion == "none") != (self.effusion_size == "none") or self.effusion_size not in (
            "none",
            *EFFUSION_SIZES,
        ):
            raise ValueError(f"bad effusion_size {self.effusion_size!r} for effusion {self.effusion!r}")
        if self.pneumothorax not in ("none", *SIDES):
            raise ValueError(f"pneumothorax must be none/left/right, got {self.pneumothorax!r}")
        if self.consolidation not in ("none", *ZONES):
            raise ValueError(f"consolidation must be none or one of {ZONES}, got {self.consolidation!r}")

    def label_vector(self) -> dict[str, bool]:
        """Presence of each finding in LABELS order."""
        return {
            "cardiomegaly": self.cardiomegaly,
            "effusion": self.effusion != "none",
            "pneumothorax": self.pneumothorax != "none",
            "consolidation": self.consolidation != "none",
            "edema": self.edema,
            "ett": self.ett,
            "pacemaker": self.pacemaker,
        }

    def attributes(self) -> dict[str, str]:
        """Side / size / zone of the findings that have one ("none" when the finding is absent)."""
        return {
            "effusion_side": self.effusion,
            "effusion_size": self.effusion_size,
            "pneumothorax_side": self.pneumothorax,
            "consolidation_zone": self.consolidation,
        }

    def is_normal(self) -> bool:
        return not any(self.label_vector().values())

    def mirrored(self) -> Findings:
        """The same findings on the other side: left and right swap in the effusion (bilateral stays), the
        pneumothorax and the consolidation zone; the heart and devices stay where anatomy puts them."""
        swap = {"left": "right", "right": "left"}
        zone = self.consolidation
        if zone != "none":
            side, level = zone.split()
            zone = f"{swap[side]} {level}"
        return replace(
            self,
            effusion=swap.get(self.effusion, self.effusion),
            pneumothorax=swap.get(self.pneumothorax, self.pneumothorax),
            consolidation=zone,
        )

    def swapped(self) -> Findings:
        """Every side, size and zone swapped (left <-> right, small <-> large, upper <-> lower; bilateral
        stays): what the attribute contrast trains against (data/pairs.py). A guided drawing is pushed away
        from the same (studio/guidance.py, "swapped"), except that there a small effusion is left out."""
        return replace(
            self,
            effusion=swap_words(self.effusion),
            effusion_size=swap_words(self.effusion_size),
            pneumothorax=swap_words(self.pneumothorax),
            consolidation=swap_words(self.consolidation),
        )

    def guidance_negative(self) -> Findings:
        """What the app's guided drawing of these findings is pushed away from (studio/guidance.py,
        "swapped", for a checkpoint that draws from the reading): ``swapped``, a small effusion left out."""
        out = self.swapped()
        if self.effusion_size == UNDRAWN_SIZE:
            out = replace(out, effusion="none", effusion_size="none")
        return out

    def is_lateral(self) -> bool:
        """Whether a finding sits on one side (a one-sided effusion, a pneumothorax or a consolidation)."""
        return self != self.mirrored()


def sample_findings(rng: np.random.Generator) -> Findings:
    """Draw findings: 25% normal, else 1-3 distinct findings (each label present in ~21% of cases)."""
    if rng.random() < 0.25:
        return Findings()
    k = int(rng.choice([1, 2, 3], p=[0.35, 0.35, 0.30]))
    chosen = set(rng.choice(len(LABELS), size=k, replace=False).tolist())
    on = {name: i in chosen for i, name in enumerate(LABELS)}
    kw: dict[str, object] = {"cardiomegaly": on["cardiomegaly"], "edema": on["edema"]}
    kw["ett"], kw["pacemaker"] = on["ett"], on["pacemaker"]
    if on["effusion"]:
        kw["effusion"] = EFFUSION_SIDES[int(rng.choice(3, p=[0.35, 0.35, 0.30]))]
        kw["effusion_size"] = EFFUSION_SIZES[int(rng.integers(2))]
    if on["pneumothorax"]:
        kw["pneumothorax"] = SIDES[int(rng.integers(2))]
    if on["consolidation"]:
        kw["consolidation"] = ZONES[int(rng.integers(4))]
    return Findings(**kw)  # type: ignore[arg-type]

"""What a guided drawing is pushed away from: the negative prompt of SamplingConfig.guidance.

A guided drawing samples each image id from log p(x | findings) + (s - 1) (log p(x | findings) -
log p(x | negative)) (engine/generation.guide). What the negative holds decides what the push does:

- ``"sides"`` (the default): each half of the image is drawn from the findings on its side of the chest,
  guided away from those on the other side. A text with a finding on one side only ("large right
  effusion") gives two prompts: the findings in the patient's right lung (that effusion, and everything
  not on one side) and those in the left (no effusion). The image's left columns (the patient's right, by
  radiological convention) are sampled from the right's prompt pushed away from the left's, the right
  columns the other way round (engine/generation.generate_image, ``split_width``). Both prompts state the
  findings that have no side, so those cancel out; the push is towards each one-sided finding on its own
  side and away from it on the other. Drawn from the whole text, the demo model ran a one-sided effusion's
  fluid level across both lung bases (docs/DEMO_MODEL.md). A text with no one-sided finding, one whose
  only one-sided finding is a small effusion (split, the demo model left more small effusions out), and a
  model given the text as typed (whose words cannot be split safely) get the swapped negative below.
- ``"swapped"``: the same findings with every stated side, size and zone swapped (left <->
  right, small <-> large, upper <-> lower). Both prompts state the same findings, so presence cancels out
  and the push is towards the attributes asked for. A text that states no side, size or zone has nothing
  to swap, and its drawing is not guided (the two prompts would be the same). One exception, for a
  checkpoint that draws from the reading: a small effusion's negative states no effusion at all. Its
  swapped size (large) would push the drawing towards less fluid, and what the demo model gets wrong with
  a small effusion is leaving it out (docs/DEMO_MODEL.md: with "large" as the negative it drew 2 of 30
  small effusions, with none 15 of 30), so the push goes towards drawing it.
- ``"normal"``: the template report of a normal chest. The push is towards abnormality of any kind: more
  of the attributes asked for, and more findings that were not asked for.

A checkpoint that draws from the labeler's reading (StudioInfo.draw_prompt "canonical") gets the reading
swapped and written as its template report. A model given the text as typed gets that text with its side,
size and zone words swapped; the provenance then names the negative, never quotes it (it holds the
user's words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from llmcxr_app.config import SamplingConfig
from llmcxr_app.studio.reading import FindingsReading, canonical_text, read_findings

# The template report of a normal chest: the "normal" negative (the app's own words).
NORMAL_TEXT = canonical_text(read_findings(""))
# What the provenance says of a swapped negative made from the user's own text.
SWAPPED_AS_TYPED = "the findings as typed, with their side, size and zone words swapped"
# What the details say each negative pushes away from (the UI's words).
AWAY_FROM = {
    "sides": "the other lung's findings",
    "swapped": "the other side, size and zone",
    "normal": "a normal chest",
}
# The reading's size of an effusion whose negative states no effusion (see the module's docstring).
UNDRAWN_SIZE = "small"
NOTHING_TO_SWAP = "no side, size or zone stated to guide by"

# Attribute words and their opposites. Lower case; the clinicians' lobe abbreviations swap side and level
# together, as a reading's zone ("right upper" -> "left lower") does.
_SWAPS = {
    "left": "right",
    "right": "left",
    "lt": "rt",
    "rt": "lt",
    "l": "r",  # capitals only (_opposite)
    "r": "l",
    "small": "large",
    "large": "small",
    "tiny": "massive",
    "massive": "tiny",
    "upper": "lower",
    "lower": "upper",
    "rul": "lll",
    "lll": "rul",
    "rll": "lul",
    "lul": "rll",
}
_WORD = re.compile(r"\b(" + "|".join(sorted(_SWAPS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


# The reading's attributes of each finding that can be on one side, the one that says where first ("right",
# "left", "right upper", ...); all are "none" when the finding is not there.
_ATTRIBUTES = {
    "effusion": ("effusion_side", "effusion_size"),
    "pneumothorax": ("pneumothorax_side",),
    "consolidation": ("consolidation_zone",),
}


@dataclass(frozen=True)
class Negative:
    """The negative prompt of one guided drawing."""

    text: str  # findings text of the negative prompt (may hold the user's words: never logged or recorded)
    record: str  # what the provenance says of it: the app's own text, or a description
    away_from: str  # what it is (GUIDE_AWAY_FROM): "sides" only when the halves are drawn apart
    # "sides": the findings text of the patient's right half, which the prompt holds in place of the whole
    # text (the negative, ``text``, then holds the left half's); None: the prompt is the drawing's own
    right: str | None = None


def _same_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    return word.capitalize() if like[0].isupper() else word


def _opposite(word: str) -> str:
    if len(word) == 1 and word.islower():  # "r/o" is "rule out": only a capital R or L is a side
        return word
    return _same_case(_SWAPS[word.lower()], word)


def swap_words(text: str) -> str:
    """``text`` with every side, size and zone word replaced by its opposite ("Large R effusion" -> "Small L
    effusion"), case kept."""
    return _WORD.sub(lambda m: _opposite(m.group(0)), text)


def swapped_reading(reading: FindingsReading) -> FindingsReading:
    """The same findings with each stated attribute swapped ("right upper" -> "left lower"; "bilateral" and
    unstated ones stay)."""
    attributes = {k: v if v is None else swap_words(v) for k, v in reading.attributes.items()}
    return FindingsReading(states=dict(reading.states), attributes=attributes)


def _without(reading: FindingsReading, labels: Iterable[str]) -> FindingsReading:
    """``reading`` with the findings ``labels`` not there (as a text that does not name them reads)."""
    states, attributes = dict(reading.states), dict(reading.attributes)
    for label in labels:
        states[label] = "none"
        attributes.update(dict.fromkeys(_ATTRIBUTES[label], "none"))
    return FindingsReading(states=states, attributes=attributes)


def _small_effusion(reading: FindingsReading) -> bool:
    return reading.present["effusion"] and reading.attributes.get("effusion_size") == UNDRAWN_SIZE


def negative_reading(reading: FindingsReading) -> FindingsReading:
    """What a canonical-prompt checkpoint's "swapped" negative states: ``swapped_reading``, except that a
    small effusion is not there at all (its swapped size would push towards leaving it out)."""
    swapped = swapped_reading(reading)
    return _without(swapped, ["effusion"]) if _small_effusion(reading) else swapped


def _one_side(reading: FindingsReading) -> dict[str, str]:
    """The present findings stated on one side only, each with its side ("right" or "left")."""
    sides = {}
    for label, (where_key, *_) in _ATTRIBUTES.items():
        where = (reading.attributes.get(where_key) or "").split()[:1]
        if reading.present[label] and where in (["left"], ["right"]):
            sides[label] = where[0]
    return sides


def side_reading(reading: FindingsReading, side: str) -> FindingsReading:
    """The findings of ``reading`` that lie in the patient's ``side`` ("right" or "left") of the chest: a
    finding stated on the other side only is left out; bilateral ones and those with no side stay."""
    return _without(reading, [label for label, where in _one_side(reading).items() if where != side])


def _small_effusion_only(reading: FindingsReading) -> bool:
    """Whether the only finding on one side is a small effusion (then drawn whole: see the module)."""
    return list(_one_side(reading)) == ["effusion"] and _small_effusion(reading)


def _sides(reading: FindingsReading) -> Negative | None:
    """The "sides" prompts of a canonical checkpoint's drawing; None when no finding is on one side only,
    or only a small effusion is."""
    right = canonical_text(side_reading(reading, "right"))
    left = canonical_text(side_reading(reading, "left"))
    if right == left or _small_effusion_only(reading):
        return None
    return Negative(left, f"right half: {right} | left half: {left}", "sides", right=right)


def _swapped(findings: str, reading: FindingsReading, canonical: bool) -> Negative | None:
    if canonical:
        text = canonical_text(negative_reading(reading))
        return None if text == canonical_text(reading) else Negative(text, text, "swapped")
    text = swap_words(findings)
    return None if text == findings else Negative(text, SWAPPED_AS_TYPED, "swapped")


def negative_for(findings: str, reading: FindingsReading, canonical: bool, away_from: str) -> Negative | None:
    """The negative prompt for a guided drawing of ``findings`` (read as ``reading``; ``canonical``: the
    model is given the reading's template report). "sides" falls back to "swapped" where it cannot split
    the findings; None when a swapped negative would equal the prompt."""
    if away_from == "normal":
        return Negative(NORMAL_TEXT, NORMAL_TEXT, "normal")
    if away_from not in ("sides", "swapped"):
        raise ValueError(f"Unknown guide_away_from {away_from!r}.")
    halves = _sides(reading) if away_from == "sides" and canonical else None
    return halves or _swapped(findings, reading, canonical)


def plan(
    sampling: SamplingConfig, default_scale: float, findings: str, reading: FindingsReading, canonical: bool
) -> tuple[SamplingConfig, Negative | None, dict]:
    """How one drawing is guided: (the sampling its loop runs, the negative prompt or None, what the
    provenance says of it). An unset scale is ``default_scale`` (the checkpoint's); a drawing with nothing
    to swap runs unguided (scale 1), and the provenance says why."""
    scale = default_scale if sampling.guidance is None else sampling.guidance
    away = sampling.guide_away_from
    negative = negative_for(findings, reading, canonical, away) if scale != 1.0 else None
    said = {
        "guided_away_from": negative.away_from if negative else None,
        "guidance_negative": negative.record if negative else None,
        "guidance_skipped": NOTHING_TO_SWAP if scale != 1.0 and negative is None else None,
    }
    return replace(sampling, guidance=scale if negative else 1.0), negative, said


def describe(provenance: Mapping) -> str | None:
    """How a drawing's provenance says it was guided, in words ("guidance 2 (away from a normal chest)",
    or why it ran unguided); None for an unguided drawing."""
    away = provenance.get("guided_away_from")
    if away:
        scale = (provenance.get("sampling") or {}).get("guidance")
        return f"guidance {scale:g} (away from {AWAY_FROM.get(away, away)})"
    skipped = provenance.get("guidance_skipped")
    return f"unguided ({skipped})" if skipped else None

"""How the app reads a findings text: the labeler's findings, and the template report that states them.

A user writes findings in their own words ("Massive R effusion, no PTX."). The labeler (labeler.py) reads
which of its seven findings the text states as present, hedged or negated, and their side, size and zone.
That reading is shown to the user beside every drawing ("read as: large right pleural effusion"), so they
can see what was understood; the Draw self-check compares a drawing's read-back with the same reading.

A model whose checkpoint says it learned to draw from the template language (config.json
``"llmcxr_draw_prompt": "canonical"``: the embedded demo model, which never saw clinicians' wording) is
given `canonical_text(reading)` instead of the user's words: the template report (template_text.py) of
the findings read, with the first wording of every sentence, so it draws what was understood in the words
it knows. A finding that is only hedged ("possible effusion") is not drawn. Models trained on real reports
(the official LLM-CXR) get the text as typed. Pure functions; no model, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcxr_app.studio import template_text
from llmcxr_app.studio.labeler import LABELS, read_states

NOTHING_READ = "no finding the model draws (a normal chest)"  # summary of a reading with nothing present


@dataclass(frozen=True)
class FindingsReading:
    """The labeler's reading of one findings text."""

    states: dict[str, str]  # label -> "present" | "absent" | "uncertain" | "none" (labeler.STATES)
    attributes: dict[str, str | None]  # effusion_side/_size, pneumothorax_side, consolidation_zone (labeler)

    @property
    def present(self) -> dict[str, bool]:
        """Each label in LABELS order: stated as present (a hedged finding is not)."""
        return {lab: self.states[lab] == "present" for lab in LABELS}

    @property
    def hedged(self) -> tuple[str, ...]:
        """Labels only hedged ("possible effusion"): uncertain, so not drawn."""
        return tuple(lab for lab in LABELS if self.states[lab] == "uncertain")

    def summary(self) -> str:
        """One line for the user: "large right pleural effusion, cardiomegaly; hedged, not drawn: pneumothorax"."""
        found = [template_text.describe(lab, self.attributes) for lab, on in self.present.items() if on]
        text = ", ".join(found) or NOTHING_READ
        if self.hedged:
            text += "; hedged, not drawn: " + ", ".join(
                template_text.describe(lab, {}) for lab in self.hedged
            )
        return text


def read_findings(text: str) -> FindingsReading:
    """The labeler's reading of ``text`` (one pass over its mentions)."""
    states, attributes = read_states(text)
    return FindingsReading(states=states, attributes=attributes)


def canonical_text(reading: FindingsReading) -> str:
    """The template report of the findings read (template_text.report with its first wordings)."""
    return template_text.report(reading.present, reading.attributes, template_text.FIRST)

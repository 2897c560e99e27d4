"""Data splits of the demo model: training, validation (for choices between runs) and test seeds, and
the finding combinations held out of the clinician-style training round.

- training phantoms: seeds 0 .. n_phantoms - 1 (a recipe stage's `n_phantoms`, far below 900,000);
- validation: phantom and text seeds VAL_SEED_START .. VAL_SEED_STOP - 1; the training sampler never draws
  them (its text rng is one stream seeded by the stage's seed, its phantoms are seeds below n_phantoms);
- test: the evaluation's seeds >= samples.EVAL_SEED_START (1,000,000), and the hand-written text set.

HELD_OUT combinations are removed from the clinician-style round's training data (all tasks). The earlier
rounds of the shipped model (template text) did see phantoms with these combinations, so they are held out
of that round only, not of the model's whole history.
"""

from __future__ import annotations

from collections.abc import Callable

from llmcxr_app.demo.data.findings import Findings

VAL_SEED_START = 900_000  # first validation seed (phantom seed and text seed)
VAL_SEED_STOP = 910_000  # one past the last validation seed

HELD_OUT: dict[str, Callable[[Findings], bool]] = {
    "left pneumothorax with a right pleural effusion": lambda f: (
        f.pneumothorax == "left" and f.effusion == "right"
    ),
    "cardiomegaly with left upper zone consolidation": lambda f: (
        f.cardiomegaly and f.consolidation == "left upper"
    ),
    "pacemaker with pulmonary edema": lambda f: f.pacemaker and f.edema,
}


def held_out(f: Findings) -> bool:
    """Whether `f` carries one of the HELD_OUT combinations."""
    return any(rule(f) for rule in HELD_OUT.values())


def validation_seeds(n: int, start: int = VAL_SEED_START) -> range:
    """The first n validation seeds from `start`; raises if they leave the validation range."""
    if not (VAL_SEED_START <= start and start + n <= VAL_SEED_STOP):
        raise ValueError(f"validation seeds must lie in [{VAL_SEED_START}, {VAL_SEED_STOP}); got {start}+{n}")
    return range(start, start + n)

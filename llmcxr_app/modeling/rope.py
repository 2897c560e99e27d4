"""Rotary positions tuned to the image grid: a rotary base under which one rotary pair turns exactly once per
grid row, so the column of an image id is a function of that pair alone.

Why: to put a finding on the asked side the model must know whether the id it draws lies left or right of
the spine, i.e. its column in the 16 x 16 grid. Rotary positions give attention only relative offsets, and at
the default base (10000) none of the rotated pairs has a period of 16 ids, so a column is not a function of
any one of them: the model must infer it from the ids it has drawn (docs/DEMO_MODEL.md measures how well).
When pair 1 turns by 2 pi / 16 per position, the score of a query against the image's opening marker (or any
key) depends on the column through that pair alone, so one head can tell left from right. It stays the
official format: the base is GPT-NeoX's rope_theta config field. Grafted onto a model trained at the
default base it did not pay within a round of training (round 19 in docs/DEMO_MODEL.md: the attention it had
learned broke); LLMShape.rope_grid_width builds it in from the start instead.

How: the default rotary embedding turns pair j (of rotary_dims / 2) by theta ** (-2 j / rotary_dims) radians
per position, so pair `pair` has period `grid_width` when theta = (grid_width / 2 pi) ** (rotary_dims / (2 pair)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEFAULT_ROPE_THETA = 10000.0  # GPT-NeoX's (and dolly-v2's) rotary base
DEFAULT_ROTARY_FRACTION = 0.25  # GPT-NeoX's (and dolly-v2's) share of each head's dims that are rotated


def rope_settings(config: Mapping[str, Any]) -> tuple[float, float]:
    """(rotary fraction, rotary base) of a GPT-NeoX config as a dict (config.json, or a config's to_dict()).

    transformers 5 writes them in ``rope_parameters`` (partial_rotary_factor, rope_theta); older files have
    rotary_pct and rotary_emb_base at the top level. Either is read, the first spelling first; what neither
    holds is GPT-NeoX's default."""
    rope = config.get("rope_parameters") or {}
    fraction = rope.get("partial_rotary_factor", config.get("rotary_pct", DEFAULT_ROTARY_FRACTION))
    theta = rope.get("rope_theta", config.get("rotary_emb_base", DEFAULT_ROPE_THETA))
    return float(fraction), float(theta)


def grid_rope_theta(rotary_dims: int, grid_width: int, pair: int = 1) -> float:
    """The rotary base under which pair `pair` (1 .. rotary_dims/2 - 1) turns once every `grid_width` ids.

    Pair 0 turns by 1 radian per position whatever the base, so it cannot be tuned. The demo LLM (head 64,
    rotary fraction 0.25: 16 rotary dims) on a 16-wide grid gets about 1768."""
    if rotary_dims < 4 or rotary_dims % 2:
        raise ValueError(f"rotary_dims must be even and at least 4, not {rotary_dims}")
    if not 1 <= pair < rotary_dims // 2:
        raise ValueError(f"pair must be in 1..{rotary_dims // 2 - 1}, not {pair}")
    if grid_width <= 2 * math.pi:
        raise ValueError(f"a grid {grid_width} wide needs a pair faster than pair 0; none can be tuned")
    return (grid_width / (2 * math.pi)) ** (rotary_dims / (2 * pair))

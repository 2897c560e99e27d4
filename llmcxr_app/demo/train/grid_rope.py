"""A recipe's "grid_rope" stage: retune a saved GPT-NeoX's rotary base so that one rotary pair turns exactly
once per row of the image grid (modeling/rope.py says why). Only config.json changes: the weights load as
before, now seeing the new positions, and the rounds after the stage train them to use it.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmcxr_app.modeling import builders
from llmcxr_app.modeling.rope import grid_rope_theta, rope_settings


def rotary_dims(config: dict) -> int:
    """Rotated dims per head of a GPT-NeoX config.json."""
    fraction, _ = rope_settings(config)
    return builders.rotary_dims(config["hidden_size"], config["num_attention_heads"], fraction)


def set_grid_rope(llm_dir: Path, grid_width: int, pair: int = 1) -> dict:
    """Rewrite llm_dir/config.json's rope base for `grid_width`; returns {"from": old, "to": new, ...}."""
    path = llm_dir / "config.json"
    config = json.loads(path.read_text())
    if config.get("model_type") != "gpt_neox":
        raise ValueError(f"{path}: grid_rope needs a GPT-NeoX config, not {config.get('model_type')!r}")
    rope = dict(config.get("rope_parameters") or {})
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"{path}: grid_rope needs the default rope, not {rope['rope_type']!r}")
    fraction, old = rope_settings(config)
    theta = grid_rope_theta(rotary_dims(config), grid_width, pair)
    rope.update({"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": fraction})
    config["rope_parameters"] = rope
    for stale in ("rotary_emb_base", "rotary_pct"):  # one spelling, so no reader takes a stale one
        config.pop(stale, None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return {"from": old, "to": theta, "grid_width": grid_width, "pair": pair}

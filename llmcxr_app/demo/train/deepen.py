"""Make a trained GPT-NeoX deeper without changing what it computes, so that a further round can train the
extra layers from where the model already is (a recipe's "deepen_llm" stage).

Why: the demo model must know which column of the 16 x 16 grid it is drawing to put a finding on the asked
side, and GPT-NeoX's rotary positions give it only relative offsets; a deeper stack has more steps in which
to work the column out (docs/DEMO_MODEL.md measures it). Training a deeper model from scratch costs hours of
CPU; growing the trained one costs a further round.

How: every old layer keeps its weights and its order; a new layer is a copy of the old layer just before it
whose two output projections (attention.dense and mlp.dense_4h_to_h, weights and biases) are zero. With
GPT-NeoX's parallel residual a block computes x + attn(ln1(x)) + mlp(ln2(x)), so such a block returns x
unchanged and the deeper model's logits equal the old model's (the tests check it). The copied input
projections give the new block useful features as soon as its outputs move off zero. The result is a plain
GPTNeoXForCausalLM built from its own config (the official format), not an edited module list.
"""

from __future__ import annotations

from typing import Any

import torch

# The tensors of a block that write into the residual stream; zero, they make the block the identity.
_OUTPUT_PROJECTIONS = ("attention.dense.", "mlp.dense_4h_to_h.")


def layer_plan(old_layers: int, new_layers: int) -> list[tuple[int, bool]]:
    """For each new layer: (old layer it copies, whether it is an added identity copy).

    Added layers are spread evenly: old layer i is followed by its share of the copies, so 4 -> 8 gives
    [(0, False), (0, True), (1, False), (1, True), ...] and 4 -> 6 adds a copy after layers 1 and 3."""
    if new_layers < old_layers:
        raise ValueError(f"cannot deepen {old_layers} layers to {new_layers}")
    extra = new_layers - old_layers
    plan = []
    for i in range(old_layers):
        plan.append((i, False))
        # copies after layer i: how many of the first i+1 of old_layers slots the even spread has reached
        due = (i + 1) * extra // old_layers - i * extra // old_layers
        plan.extend((i, True) for _ in range(due))
    return plan


def deepen(model: Any, num_layers: int) -> Any:
    """A GPTNeoXForCausalLM with `num_layers` blocks that computes what `model` computes (float32).

    Needs the parallel residual (use_parallel_residual=True, the official and demo layout): with the
    sequential residual a zeroed block would still pass its MLP a different input."""
    from transformers import GPTNeoXForCausalLM

    config = model.config
    if getattr(config, "model_type", None) != "gpt_neox":
        raise ValueError(f"deepen needs a GPT-NeoX model, not {config.model_type!r}")
    if not config.use_parallel_residual:
        raise ValueError("deepen keeps the model's function only with use_parallel_residual=True")
    plan = layer_plan(config.num_hidden_layers, num_layers)
    new_config = type(config).from_dict({**config.to_dict(), "num_hidden_layers": num_layers})
    target = GPTNeoXForCausalLM(new_config).float()
    src = model.state_dict()
    state = {k: v for k, v in src.items() if ".layers." not in k}
    for new, (old, added) in enumerate(plan):
        prefix = f"gpt_neox.layers.{old}."
        for key, value in src.items():
            if not key.startswith(prefix):
                continue
            part = key[len(prefix) :]
            zero = added and part.startswith(_OUTPUT_PROJECTIONS)
            state[f"gpt_neox.layers.{new}.{part}"] = torch.zeros_like(value) if zero else value.clone()
    target.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    target.generation_config = model.generation_config
    return target

"""The recipe of the demo adapter model (LLaVA format): sizes, step counts, learning rates and seeds.

Fixed step counts (no wall-clock budget) so one command rebuilds the same weights on any machine:
`python -m llmcxr_app.demo.train.adapter --out weights/demo-adapter` (preset "demo-adapter").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcxr_app.modeling.builders import DEMO_LLM, LLMShape


@dataclass(frozen=True)
class VisionShape:
    """A CLIP-style ViT (the MedCLIP role); (image_size / patch_size)^2 patches = image tokens after the projector."""

    image_size: int = 128  # pixels; phantoms reach the model at 128 px like the token demo's VQ-GAN input
    patch_size: int = 16  # 128 / 16 = 8 x 8 = 64 patch tokens (the CLS token is dropped by LLaVA's "default")
    hidden_size: int = 192  # ViT width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 3  # attention heads (64 dims each)
    intermediate_size: int = 768  # MLP width
    embed_dim: int = 128  # shared image/text space of the contrastive pretraining


@dataclass(frozen=True)
class StageConfig:
    """One optimisation stage: steps, batch and AdamW schedule (linear warm-up, cosine decay to 5 %)."""

    steps: int  # optimizer steps
    batch: int  # examples per step
    lr: float  # peak learning rate
    warmup: int = 20  # warm-up steps


@dataclass(frozen=True)
class AdapterRecipe:
    """Every stage of the demo adapter model."""

    seed: int = 0  # init, batching and example phrasing derive from it
    n_phantoms: int = 6000  # training phantoms: seeds 0..n-1, as the token demo model
    val_seed_start: int = 900_000  # held-out validation phantoms (choices only; test seeds are >= 1e6)
    n_val: int = 30  # validation phantoms scored for the stage-2 choice (a report and one question each)
    llm: LLMShape = DEMO_LLM  # the shared base LM: the token demo's GPT-NeoX size
    vision: VisionShape = field(default_factory=VisionShape)  # the vision tower
    # Step counts sized from step times measured on the shared 2-core CPU with one thread (base 0.11-0.4 s,
    # contrastive 0.8-1.5 s, LLaVA stages 0.5-1.6 s per step, depending on the load): about an hour in all.
    base: StageConfig = StageConfig(steps=2000, batch=16, lr=1.5e-3, warmup=40)  # 0: text-only base LM
    clip: StageConfig = StageConfig(steps=400, batch=64, lr=5e-4, warmup=30)  # 1: contrastive vision tower
    stage1: StageConfig = StageConfig(steps=150, batch=16, lr=2e-3, warmup=15)  # 2: projector only
    stage2: StageConfig = StageConfig(steps=900, batch=16, lr=8e-4, warmup=30)  # 3: projector + LLM
    pilot_steps: int = 60  # stage-2 steps of each vision-tower variant compared on validation
    vision_lr_scale: float = 0.1  # "lightly tuned" vision tower: this fraction of the stage-2 learning rate
    qa_per_image: int = 2  # VQA examples per phantom in stage 2 (as the token demo)
    plain_fraction: float = 0.1  # declined plain instructions per phantom in stage 2 (as the token demo)
    threads: int = 1  # torch CPU threads (one measured 5x faster than two on the busy 2-core machine)


PRESETS: dict[str, AdapterRecipe] = {
    "demo-adapter": AdapterRecipe(),
    # Seconds on a CPU, for the tests: tiny networks, a few steps of every stage.
    "tiny": AdapterRecipe(
        n_phantoms=16,
        n_val=2,
        llm=LLMShape(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, max_positions=256),
        vision=VisionShape(
            image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
        ),
        base=StageConfig(steps=3, batch=4, lr=1e-3, warmup=1),
        clip=StageConfig(steps=6, batch=8, lr=3e-3, warmup=1),
        stage1=StageConfig(steps=2, batch=4, lr=1e-3, warmup=1),
        stage2=StageConfig(steps=2, batch=4, lr=1e-3, warmup=1),
        pilot_steps=1,
        threads=1,
    ),
}

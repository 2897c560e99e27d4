"""The demo model's training settings: TrainConfig (one training.run) and its named presets.

A recipe stage (train/recipe.py) is a preset plus overrides; docs/DEMO_MODEL.md says what each round set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmcxr_app.modeling.builders import DEMO_LLM, DEMO_VOCAB, DEMO_VQGAN, LLMShape
from llmcxr_app.modeling.vqgan import VQGANConfig


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    seed: int = 0  # everything (phantom seeds, init, batching) derives from it
    n_phantoms: int = 3000  # training phantoms (seeds 0..n-1)
    vqgan: VQGANConfig = DEMO_VQGAN  # f8 at 128 px -> the official 16 x 16 grid
    vq_steps: int = 500  # VQ-GAN optimizer steps
    vq_batch: int = 12  # image crops per VQ-GAN step
    vq_crop: int = 64  # the fully convolutional VQ-GAN trains on random crops (4x cheaper than 128 px)
    vq_lr: float = 2e-3  # Adam learning rate of the VQ-GAN
    vocab_size: int = DEMO_VOCAB  # BPE vocabulary (before the special tokens)
    llm: LLMShape = DEMO_LLM  # GPT-NeoX size
    lm_steps: int = 1300  # LLM optimizer steps
    lm_batch: int = 16  # examples per LLM step
    lm_lr: float = 1.5e-3  # peak AdamW learning rate (cosine decay, linear warm-up)
    lm_warmup: int = 60  # warm-up steps
    lm_budget_s: float = 0.0  # > 0: cap LLM steps so the stage fits this many seconds (step time measured
    #                           over the first 10 steps; the cosine schedule then spans the capped count)
    qa_per_image: int = 2  # VQA examples per phantom
    draw_keep: float = 1.0  # fraction of report->CXR examples kept (each carries 256 image-id targets)
    loss_weighting: str = "token"  # "token": mean over all target ids (upstream's trainer); "example": each
    #                                example's mean, so a 3-id VQA answer weighs as much as a 257-id drawing
    threads: int = 2  # torch CPU threads
    init_llm: str = ""  # a text-only base LM directory to start the LLM from (init_from_base.py); "": random
    rich_fraction: float = 0.0  # share of drawing texts / VQA questions in clinician style (data/language.py)
    hold_out: bool = False  # drop phantoms with the held-out finding combinations (data/splits.py)
    mirror_twins: bool = False  # also train on each one-sided phantom's anatomy with its findings on the
    #                             other side (data.mirror_twins): pairs that differ only in the side
    context_noise: float = 0.0  # > 0: this fraction of a drawing's input image ids is replaced by random
    #                             image ids, labels unchanged (data.corrupt_image_context)
    finding_weight: float = 1.0  # > 1: in drawing examples the image ids of the cells that show the findings
    #                               (data.finding_cells) weigh this much in the loss
    focus_cells: str = "findings"  # the cells finding_weight weighs: "findings" (data.finding_cells) or
    #                                "contrast" (data/pairs.contrast_cells: also where the swapped findings
    #                                would show, e.g. the other lung base, which must stay clear)
    side_contrast: float = 0.0  # > 0: weight of the attribute contrast (losses.contrast_loss) on pairs of
    #                             texts with side, size and zone swapped (data/pairs.py), added to the loss
    contrast_pairs: int = 4  # pairs per LLM step when side_contrast > 0 (two sequences each)
    contrast_beta: float = 0.5  # the contrast's scale: its loss fades once a margin is a few 1/beta nats
    contrast_against: str = "swapped"  # a pair's second text (data/pairs.AGAINST): "swapped" (rounds 22,
    #                                    22b) or "negative" (the app's guidance negative: a small effusion
    #                                    left out); also the other findings of focus_cells "contrast"
    preference_prompts: int = 0  # > 0 (a continue_llm round): the pairs are the starting model's own
    #                              drawings of this many requests, the one a critic reads closest to the
    #                              request preferred (train/preference.py; DPO), not the attribute contrast
    preference_candidates: int = 4  # drawings per request of a preference round
    critic_steps: int = 800  # a preference round's critic (a reader CNN on the round's phantoms): its steps
    draw_prompt: str = "canonical"  # written to config.json (loading.weights.DRAW_PROMPT_KEY): "canonical"
    #                                 = the app draws from the labeler's reading in the templates' words
    question_prompt: str = "canonical"  # written to config.json (QUESTION_PROMPT_KEY): "canonical" = the
    #                                     app asks the template question a question reads as
    draw_guidance: float = 1.0  # written to config.json (DRAW_GUIDANCE_KEY) when not 1: the app's default
    #                             guidance for its drawings (studio/guidance.py); no effect on training


PRESETS = {
    "demo": TrainConfig(),
    "tiny": TrainConfig(
        n_phantoms=24,
        vqgan=VQGANConfig(
            embed_dim=8,
            n_embed=32,
            ch=32,
            ch_mult=(1, 1, 1, 1),
            num_res_blocks=1,
            attn_resolutions=(),
            z_channels=8,
            resolution=128,
        ),
        vq_steps=3,
        vq_batch=2,
        vq_crop=32,
        vocab_size=400,
        llm=LLMShape(num_layers=1, hidden_size=64, num_heads=2, intermediate_size=128, max_positions=1024),
        lm_steps=3,
        lm_batch=2,
        lm_warmup=1,
    ),
}
# Budget-matched to the adapter demo (weights/demo-adapter/training.json): the same shared base LM, and as
# many image-text examples as the adapter's stage 1 + pilots + stage 2 (150 + 2 x 60 + 900 = 1170 steps of
# 16). The VQ-GAN is reused from weights/demo (--reuse-vqgan on a copy of its vqgan/): its codes are this
# model's vision encoder, so the token model gets a pretrained image tokenizer just as the adapter got a
# pretrained (contrastive) vision tower, whose 400 steps are likewise not counted here.
PRESETS["base-matched"] = replace(
    PRESETS["demo"],
    n_phantoms=6000,  # seeds 0-5999, as the adapter
    lm_steps=1170,
    lm_lr=8e-4,  # the adapter's stage-2 peak rate (a fine-tune of the same base)
    lm_warmup=30,  # the adapter's stage-2 warm-up
    draw_keep=0.35,  # as the token demo's last rounds; drawing examples still count in the 1170 x 16
    loss_weighting="example",  # as the token demo's last rounds
    threads=1,  # as the adapter (one thread measured faster on the busy 2-core machine)
    init_llm="weights/demo-base-lm",
)

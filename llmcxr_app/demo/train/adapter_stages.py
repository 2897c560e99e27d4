"""The optimisation loops of the demo adapter model: base LM, contrastive vision tower, LLaVA stages 1-2,
and the validation score that picks the stage-2 option. Shapes: B batch, T ids, P patches, D widths."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from llmcxr_app import protocol
from llmcxr_app.demo.data import reports
from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.evaluate.metrics import answers_match, prf
from llmcxr_app.demo.train import adapter_data as ad
from llmcxr_app.demo.train import adapter_model as am
from llmcxr_app.demo.train.adapter_recipe import StageConfig, VisionShape
from llmcxr_app.demo.train.losses import completion_loss
from llmcxr_app.studio.labeler import label_verdicts

Log = Callable[[str], None]


def set_lr(opt: torch.optim.Optimizer, cfg: StageConfig, step: int) -> None:
    """Linear warm-up, then cosine decay to 5 % of each group's peak (group["peak"])."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    cos = 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
    for g in opt.param_groups:
        g["lr"] = g["peak"] * warm * (0.05 + 0.95 * cos)


def _optimizer(groups: list[tuple[list, float]]) -> torch.optim.AdamW:
    """AdamW over (parameters, peak lr) groups, as the token demo's trainer (betas 0.9/0.95, wd 0.01)."""
    params = [{"params": p, "lr": lr, "peak": lr} for p, lr in groups if p]
    return torch.optim.AdamW(params, betas=(0.9, 0.95), weight_decay=0.01)


def _step(opt, params, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def _record(history: list[float], loss: torch.Tensor, name: str, step: int, steps: int, log: Log) -> None:
    """Keep the step's loss; log the mean of the last 50 every 50 steps and at the last one."""
    history.append(float(loss.detach()))
    if step % 50 == 0 or step == steps - 1:
        log(f"{name} step {step}/{steps} loss {np.mean(history[-50:]):.4f}")


def _loss_summary(history: list[float]) -> dict:
    return {
        "loss_first10": float(np.mean(history[:10])),
        "loss_last10": float(np.mean(history[-10:])),
        "loss_last50": float(np.mean(history[-50:])),
    }


def train_lm(
    model, docs: Sequence[ad.AdapterExample], pad_id: int, cfg: StageConfig, seed: int, log: Log, name: str
) -> dict:
    """Causal LM on `docs` (loss on every id after n_prompt), length-bucketed batches; returns loss stats."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer([(params, cfg.lr)])
    rng, batches, history = np.random.default_rng(seed + 11), [], []
    for step in range(cfg.steps):
        batches = batches or data.length_batches(docs, cfg.batch, rng)
        ids, mask, labels = data.collate([docs[i] for i in batches.pop()], pad_id)
        set_lr(opt, cfg, step)
        loss = completion_loss(model(input_ids=ids, attention_mask=mask).logits, labels, "token")
        _step(opt, params, loss)
        _record(history, loss, name, step, cfg.steps, log)
    model.eval()
    return _loss_summary(history)


@torch.no_grad()
def text_embeddings(model, tokenizer, texts: Sequence[str], batch: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden state of the frozen base LM over each text: float [N, D_text]."""
    model.eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = [tokenizer.encode(t, add_special_tokens=False) for t in texts[i : i + batch]]
        width = max(map(len, enc))
        ids = torch.tensor([e + [tokenizer.pad_token_id] * (width - len(e)) for e in enc])
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in enc])
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        out.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    return torch.cat(out).float()


def finding_groups(samples: Sequence[data.Sample]) -> torch.Tensor:
    """Group id [N] per phantom: phantoms with identical findings share one (their reports say the same)."""
    keys: dict[str, int] = {}
    return torch.tensor([keys.setdefault(repr(s.findings), len(keys)) for s in samples])


def clip_loss(
    img: torch.Tensor, txt: torch.Tensor, groups: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss of normalised embeddings img, txt [B, E]; pairs of the same finding group are all
    positives (soft targets), so two normal phantoms are not pushed apart."""
    logits = scale.exp().clamp(max=100) * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    same = (groups[:, None] == groups[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (
        F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T / target.T.sum(1, keepdim=True))
    )


def train_clip(
    vision,
    text: torch.Tensor,
    groups: torch.Tensor,
    samples: Sequence[data.Sample],
    cfg: StageConfig,
    shape: VisionShape,
    seed: int,
    log: Log,
) -> dict:
    """Contrastive pretraining of `vision` (CLIPVisionModel) against fixed text embeddings [N, D_text]
    through two linear heads (discarded after); returns loss stats."""
    torch.manual_seed(seed)
    img_head = torch.nn.Linear(shape.hidden_size, shape.embed_dim, bias=False)
    txt_head = torch.nn.Linear(text.shape[1], shape.embed_dim, bias=False)
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*vision.parameters(), *img_head.parameters(), *txt_head.parameters(), scale]
    opt = _optimizer([(params, cfg.lr)])
    rng, history = np.random.default_rng(seed + 13), []
    vision.train()
    for step in range(cfg.steps):
        idx = rng.choice(len(samples), size=min(cfg.batch, len(samples)), replace=False)
        pixels = am.pixels_to_tensor([samples[i].pixels for i in idx])
        set_lr(opt, cfg, step)
        img = img_head(vision(pixel_values=pixels).pooler_output)
        loss = clip_loss(img, txt_head(text[idx]), groups[idx], scale)
        _step(opt, params, loss)
        _record(history, loss, "clip", step, cfg.steps, log)
    vision.eval()
    return _loss_summary(history)


def llava_logits(
    model, ids: torch.Tensor, mask: torch.Tensor, pixels: torch.Tensor | None, grad_vision: bool
) -> torch.Tensor:
    """LlavaForConditionalGeneration's forward, with the vision tower under no_grad unless it is trained:
    the last layer's patch features (CLS dropped) through the projector fill the `<image>` ids. [B, T, V]."""
    embeds = model.get_input_embeddings()(ids)
    if pixels is not None and len(pixels):
        with torch.set_grad_enabled(grad_vision and torch.is_grad_enabled()):
            hidden = model.model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        feats = model.model.multi_modal_projector(hidden[model.config.vision_feature_layer][:, 1:])
        where = (ids == model.config.image_token_index).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(where, feats.reshape(-1, feats.shape[-1]).to(embeds.dtype))
    return model(inputs_embeds=embeds, attention_mask=mask).logits


def _llava_groups(model, cfg: StageConfig, vision_scale: float | None) -> list[tuple[list, float]]:
    """Trainable parameter groups: stage 1 (vision_scale None) the projector alone; stage 2 the projector
    and the LLM, plus the vision tower at vision_scale x lr when vision_scale > 0."""
    projector = list(model.model.multi_modal_projector.parameters())
    llm = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
    vision = list(model.model.vision_tower.parameters())
    train_llm = vision_scale is not None
    train_vision = bool(vision_scale)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in projector + (llm if train_llm else []) + (vision if train_vision else []):
        p.requires_grad_(True)
    return [
        (projector, cfg.lr),
        (llm if train_llm else [], cfg.lr),
        (vision if train_vision else [], cfg.lr * (vision_scale or 0.0)),
    ]


def train_llava(
    model,
    examples: Sequence[ad.AdapterExample],
    samples: Sequence[data.Sample],
    tokenizer,
    cfg: StageConfig,
    vision_scale: float | None,
    seed: int,
    log: Log,
    name: str,
) -> dict:
    """One LLaVA stage with completion-only loss (each example's mean, as the token demo's later rounds)."""
    groups = _llava_groups(model, cfg, vision_scale)
    params = [p for g, _ in groups for p in g]
    opt = _optimizer(groups)
    rng, batches, history = np.random.default_rng(seed + 17), [], []
    model.train()
    for step in range(cfg.steps):
        batches = batches or data.length_batches(examples, cfg.batch, rng)
        batch = [examples[i] for i in batches.pop()]
        ids, mask, labels = data.collate(batch, tokenizer.pad_token_id)
        rows = ad.image_rows(batch)
        pixels = am.pixels_to_tensor([samples[i].pixels for i in rows]) if rows else None
        set_lr(opt, cfg, step)
        logits = llava_logits(model, ids, mask, pixels, grad_vision=bool(vision_scale))
        loss = completion_loss(logits, labels, "example")
        _step(opt, params, loss)
        _record(history, loss, name, step, cfg.steps, log)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {
        "steps": cfg.steps,
        "loss_first10": float(np.mean(history[:10])),
        "loss_last50": float(np.mean(history[-50:])),
    }


@torch.no_grad()
def greedy(
    model, tokenizer, instruction: str, pixels: np.ndarray | None, n_img: int, max_new: int = 120
) -> str:
    """Greedy answer through transformers' generate (the prompt the saved chat template renders)."""
    ids = torch.tensor([ad.prompt_ids(tokenizer, instruction, pixels is not None, n_img)])
    kw = {"pixel_values": am.pixels_to_tensor(pixels)} if pixels is not None else {}
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=tokenizer.convert_tokens_to_ids(protocol.END_KEY),
        pad_token_id=tokenizer.pad_token_id,
        **kw,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def validate(model, tokenizer, val: Sequence[data.Sample], n_img: int, seed: int) -> dict:
    """Report micro-F1 (labeler) and VQA accuracy (one question per phantom) on validation phantoms;
    score = their mean (the stage-2 choice)."""
    model.eval()
    texts, hits = [], []
    for s in val:
        texts.append(greedy(model, tokenizer, protocol.CXR_TO_REPORT_INSTRUCTIONS[0], s.pixels, n_img))
        for q, truth in reports.make_qa(s.findings, np.random.default_rng([s.seed, seed]), 1):
            hits.append(answers_match(greedy(model, tokenizer, q, s.pixels, n_img, 16), truth))
    f1 = (
        prf([label_verdicts(t) for t in texts], [s.findings.label_vector() for s in val])["micro"]["f1"]
        or 0.0
    )
    vqa = float(np.mean(hits)) if hits else 0.0
    return {"report_f1": f1, "vqa_accuracy": vqa, "score": (f1 + vqa) / 2, "n": len(val)}

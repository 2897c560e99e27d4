"""An independent image reader for phantoms: a small CNN that reads the findings off a chest phantom.

It judges images drawn by the demo LLM-CXR (report -> CXR) without trusting the generator: it never sees
the LLM or its tokens, only pixels. It is trained on phantoms from its own seed range (READER_SEED_START,
disjoint from the LLM's training seeds 0..n and the evaluation seeds >= data.EVAL_SEED_START), on a mix of
the original model-resolution inputs and their VQ-GAN reconstructions (what a generated image looks like).

Input convention: grayscale [B, 1, R, R] float in [-1, 1], R = ReaderConfig.resolution (128, the demo VQ-GAN's
resolution), bright = dense, patient's right on the image left. `to_input` converts PIL images, uint8 arrays
and VQ-GAN tensors [B, 3, R, R] (channel mean) to that.

Outputs per image: presence of each phantoms.LABELS finding (sigmoid > 0.5), and for present findings the
effusion side (left/right/bilateral) and size (small/large), the pneumothorax side (left/right) and the
consolidation zone (phantoms.ZONES); "none" where the finding is absent (labeler.label_details' keys).

    python -m llmcxr_app.demo.evaluate.reader --weights weights/demo --out weights/demo/reader   # train, save, score
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.phantoms import EFFUSION_SIDES, EFFUSION_SIZES, LABELS, SIDES, ZONES, Findings
from llmcxr_app.demo.evaluate.metrics import attribute_accuracy
from llmcxr_app.loading.weights import load_vqgan
from llmcxr_app.modeling.vqgan import VQGAN

READER_SEED_START = 2_000_000  # training phantoms of the reader: seeds READER_SEED_START + i
READER_VAL_SEED_START = 2_900_000  # the reader's own held-out phantoms (its CLI scores on these)
# Attribute heads: (key in predictions, classes). Sized by what the phantoms can show.
HEADS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("effusion_side", EFFUSION_SIDES),
    ("effusion_size", EFFUSION_SIZES),
    ("pneumothorax_side", SIDES),
    ("consolidation_zone", ZONES),
)
ATTRIBUTES = tuple(name for name, _ in HEADS)
DEFAULT_N, DEFAULT_STEPS = 1500, 800  # phantoms and optimizer steps: < 4 min on one CPU core
WEIGHTS_NAME, META_NAME = "reader.safetensors", "reader.json"


@dataclass(frozen=True)
class ReaderConfig:
    """Network and training settings of the reader."""

    resolution: int = 128  # input side in pixels (images of another size are resized to it)
    widths: tuple[int, ...] = (8, 16, 32, 32)  # conv channels, each layer stride 2: 128 px -> 8 x 8 x 32
    hidden: int = 128  # width of the fully connected layer before the heads
    dropout: float = 0.2  # before the heads
    batch: int = 48  # images per optimizer step
    lr: float = 2e-3  # peak AdamW learning rate (cosine decay)
    recon_fraction: float = 0.3  # share of training phantoms also seen as their VQ-GAN reconstruction
    threads: int = 1  # torch CPU threads while training: on a busy 2-core machine 2 threads ran 4x slower


class ReaderNet(nn.Module):
    """Conv stack -> flatten (keeps where things are: sides and zones) -> FC -> presence + attribute logits."""

    def __init__(self, cfg: ReaderConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = 1, cfg.resolution
        for c_out in cfg.widths:
            layers += [
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in, side = c_out, (side + 1) // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * side * side, cfg.hidden), nn.ReLU(inplace=True)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.presence = nn.Linear(cfg.hidden, len(LABELS))
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.hidden, len(classes)) for name, classes in HEADS})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x [B, 1, R, R] in [-1, 1] -> (presence logits [B, len(LABELS)], {head: logits [B, classes]})."""
        h = self.drop(self.fc(self.features(x)))
        return self.presence(h), {name: head(h) for name, head in self.heads.items()}


def targets(findings: Sequence[Findings]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Presence [B, len(LABELS)] float and attribute class indices [B] (-1 where the finding is absent)."""
    presence = torch.tensor([[float(v) for v in f.label_vector().values()] for f in findings])
    values = {
        "effusion_side": [f.effusion for f in findings],
        "effusion_size": [f.effusion_size for f in findings],
        "pneumothorax_side": [f.pneumothorax for f in findings],
        "consolidation_zone": [f.consolidation for f in findings],
    }
    attrs = {
        name: torch.tensor([classes.index(v) if v in classes else -1 for v in values[name]])
        for name, classes in HEADS
    }
    return presence, attrs


def truth_dict(f: Findings) -> dict[str, object]:
    """Ground truth in the reader's prediction format (presence bools + attribute strings or "none")."""
    return {**f.label_vector(), **f.attributes()}


def to_input(images: Sequence[Image.Image | np.ndarray] | torch.Tensor, resolution: int) -> torch.Tensor:
    """PIL images (any mode) / uint8 [R, R] arrays / a tensor [B, 1|3, R, R] in [-1, 1] -> [B, 1, R, R]."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Expected a [B, 1|3, R, R] tensor, got {list(x.shape)}.")
        x = x.mean(1, keepdim=True).clamp(-1, 1)
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            x = F.interpolate(
                x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
            )
        return x
    arrays = []
    for im in images:
        pil = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
        pil = pil.convert("L")
        if pil.size != (resolution, resolution):
            pil = pil.resize((resolution, resolution), Image.LANCZOS)
        arrays.append(np.asarray(pil, dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).float().div(127.5).sub(1)[:, None]


@torch.no_grad()
def reconstruct(vqgan: VQGAN, pixels: Sequence[np.ndarray], batch: int = 32) -> list[np.ndarray]:
    """uint8 [R, R] model inputs -> uint8 [R, R] VQ-GAN reconstructions decode(encode(x)) (channel mean)."""
    out: list[np.ndarray] = []
    device = next(vqgan.parameters()).device
    for i in range(0, len(pixels), batch):
        x = data.to_tensor(list(pixels[i : i + batch])).to(device)
        rec = vqgan.decode_codes(vqgan.encode_codes(x)).float().cpu()
        unit = ((rec + 1) / 2).clamp(0, 1).mean(1)
        out += list((unit * 255).round().to(torch.uint8).numpy())
    return out


def vqgan_fingerprint(vqgan: VQGAN) -> str:
    """Short sha256 of the VQ-GAN's weights: a cached reader is stale when its VQ-GAN changed."""
    h = hashlib.sha256()
    for name, t in sorted(vqgan.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small shifts (up to 3 px), exposure/contrast jitter and noise: generated images are never exact."""
    b, _, r, _ = x.shape
    pad = 3
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy : dy + r, dx : dx + r]
    gain = 1 + 0.08 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    bias = 0.08 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    noise = 0.03 * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return (x * gain + bias + noise).clamp(-1, 1)


@dataclass
class Reader:
    """A trained reader: network + settings + a record of how it was trained."""

    net: ReaderNet
    config: ReaderConfig
    meta: dict = field(default_factory=dict)  # seeds, steps, time, VQ-GAN fingerprint, held-out scores

    @torch.no_grad()
    def logits(self, images: Sequence[Image.Image | np.ndarray] | torch.Tensor, batch: int = 128):
        """Raw outputs (presence logits [B, L], {head: logits [B, C]}) for images (see `to_input`)."""
        self.net.eval()
        x = to_input(images, self.config.resolution)
        pres, heads = [], {name: [] for name in ATTRIBUTES}
        for i in range(0, len(x), batch):
            p, h = self.net(x[i : i + batch])
            pres.append(p)
            for name in ATTRIBUTES:
                heads[name].append(h[name])
        return torch.cat(pres), {name: torch.cat(v) for name, v in heads.items()}

    def predict(self, images: Sequence[Image.Image | np.ndarray] | torch.Tensor) -> list[dict]:
        """One dict per image: {label: bool for LABELS, attribute: class or "none", "prob": {label: p}}."""
        pres, heads = self.logits(images)
        probs = torch.sigmoid(pres)
        out = []
        for i in range(len(probs)):
            d: dict = {lab: bool(probs[i, j] > 0.5) for j, lab in enumerate(LABELS)}
            for (name, classes), owner in zip(
                HEADS, ("effusion", "effusion", "pneumothorax", "consolidation"), strict=True
            ):
                d[name] = classes[int(heads[name][i].argmax())] if d[owner] else "none"
            d["prob"] = {lab: round(float(probs[i, j]), 4) for j, lab in enumerate(LABELS)}
            out.append(d)
        return out

    def save(self, folder: str | Path) -> None:
        """Write reader.safetensors (weights) and reader.json (config + meta) to `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in self.net.state_dict().items()}, folder / WEIGHTS_NAME)
        doc = {"format": "llmcxr-demo-reader/1", "config": asdict(self.config), "meta": self.meta}
        (folder / META_NAME).write_text(json.dumps(doc, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> Reader:
        """Read a reader written by `save` (strict: every weight must match the recorded config)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / WEIGHTS_NAME).exists() or not (folder / META_NAME).exists():
            raise FileNotFoundError(f"No reader in {folder} (expected {WEIGHTS_NAME} and {META_NAME}).")
        doc = json.loads((folder / META_NAME).read_text())
        c = doc["config"]
        cfg = ReaderConfig(**{**c, "widths": tuple(c["widths"])})
        net = ReaderNet(cfg)
        net.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
        return cls(net.eval(), cfg, doc.get("meta", {}))


def score(predictions: Sequence[dict], truths: Sequence[Findings]) -> dict:
    """Agreement of reader-format predictions with ground-truth findings.

    Returns per-label presence accuracy, their mean, attribute accuracy over the items where the finding is
    truly present (n counted), exact match of the presence vector and of everything (presence + attributes).
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths.")
    n = len(truths)
    per_label = {}
    for lab in LABELS:
        per_label[lab] = sum(
            p[lab] == f.label_vector()[lab] for p, f in zip(predictions, truths, strict=True)
        ) / max(n, 1)
    exact_labels = sum(
        all(p[lab] == f.label_vector()[lab] for lab in LABELS)
        for p, f in zip(predictions, truths, strict=True)
    )
    keys = (*LABELS, *ATTRIBUTES)
    exact = sum(all(p[k] == truth_dict(f)[k] for k in keys) for p, f in zip(predictions, truths, strict=True))
    return {
        "label_accuracy": per_label,
        "label_accuracy_mean": sum(per_label.values()) / len(per_label),
        "attribute_accuracy": attribute_accuracy(predictions, truths),
        "exact_match_labels": exact_labels / max(n, 1),
        "exact_match": exact / max(n, 1),
        "n": n,
    }


@contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fit(
    x: torch.Tensor,
    findings: Sequence[Findings],
    steps: int,
    seed: int = 0,
    config: ReaderConfig = ReaderConfig(),
    log: Callable[[str], None] | None = None,
) -> tuple[ReaderNet, list[float]]:
    """Train a new ReaderNet on images x [N, 1, R, R] in [-1, 1] with their findings; returns (net, losses).

    Loss: BCE on presence + cross-entropy of each attribute head on the items where its finding is present
    (weighted by that share of the batch). Augmentation: `_augment`. AdamW with a one-cycle schedule.
    """
    if len(x) != len(findings) or steps < 1:
        raise ValueError(f"{len(x)} images for {len(findings)} findings, steps={steps}.")
    with _threads(config.threads):
        return _fit(x, findings, steps, seed, config, log)


def _fit(x, findings, steps, seed, config, log) -> tuple[ReaderNet, list[float]]:
    pres_all, attr_all = targets(findings)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ReaderNet(config)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    net.train()
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x), (min(config.batch, len(x)),), generator=gen)
        pres, heads = net(_augment(x[idx], gen))
        loss = F.binary_cross_entropy_with_logits(pres, pres_all[idx])
        for name in ATTRIBUTES:
            t = attr_all[name][idx]
            if (t >= 0).any():
                loss = loss + F.cross_entropy(heads[name], t, ignore_index=-1) * (t >= 0).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log and (step % 100 == 0 or step == steps - 1):
            log(f"step {step}/{steps} loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)")
    return net.eval(), losses


def train_reader(
    vqgan: VQGAN | None,
    n: int = DEFAULT_N,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    *,
    config: ReaderConfig = ReaderConfig(),
    log: Callable[[str], None] | None = None,
) -> Reader:
    """Train a reader on `n` phantoms (seeds READER_SEED_START + seed * 1000 + i) for `steps` AdamW steps.

    A `config.recon_fraction` share of them is also added as its VQ-GAN reconstruction (skipped when vqgan
    is None). Deterministic for a given seed on one machine. The phantoms are rendered at data.PHANTOM_SIZE
    and preprocessed as the app does, at the VQ-GAN's resolution (config.resolution without a VQ-GAN).
    """
    if n < 1 or steps < 1:
        raise ValueError(f"n and steps must be positive, got n={n}, steps={steps}.")
    base = READER_SEED_START + seed * 1000
    if base + n > READER_VAL_SEED_START:
        raise ValueError(f"Reader training seeds would reach its held-out range ({READER_VAL_SEED_START}).")
    say = log or (lambda _msg: None)
    with _threads(config.threads):
        t0, cpu0 = time.time(), time.process_time()
        resolution = vqgan.resolution if vqgan is not None else config.resolution
        samples = data.render_samples(range(base, base + n), resolution)
        pixels = [s.pixels for s in samples]
        findings = [s.findings for s in samples]
        t_render = time.time() - t0
        n_rec = int(round(config.recon_fraction * n)) if vqgan is not None else 0
        if n_rec:
            pixels += reconstruct(vqgan, pixels[:n_rec])
            findings += findings[:n_rec]
        t_recon = time.time() - t0 - t_render
        say(f"{n} phantoms in {t_render:.0f} s, {n_rec} reconstructions in {t_recon:.0f} s")
        net, losses = fit(to_input(pixels, config.resolution), findings, steps, seed, config, say)
        meta = {
            "seeds": [base, base + n],
            "n_phantoms": n,
            "n_reconstructions": n_rec,
            "steps": steps,
            "seed": seed,
            "vqgan_fingerprint": vqgan_fingerprint(vqgan) if vqgan is not None else None,
            "train_s": round(time.time() - t0, 1),
            # CPU seconds of this process: with a busy machine, cpu_s / threads estimates an idle one's wall time
            "cpu_s": round(time.process_time() - cpu0, 1),
            "render_s": round(t_render, 1),
            "recon_s": round(t_recon, 1),
            "threads": config.threads,
            "loss_last50": float(np.mean(losses[-50:])),
            "torch": torch.__version__,
        }
        return Reader(net, config, meta)


def held_out(reader: Reader, vqgan: VQGAN | None, n: int, seed_start: int = READER_VAL_SEED_START) -> dict:
    """Score the reader on `n` phantoms from `seed_start`: originals and (with a VQ-GAN) reconstructions."""
    resolution = vqgan.resolution if vqgan is not None else reader.config.resolution
    samples = data.render_samples(range(seed_start, seed_start + n), resolution)
    truths = [s.findings for s in samples]
    out = {
        "seeds": [seed_start, seed_start + n],
        "original": score(reader.predict([s.pixels for s in samples]), truths),
    }
    if vqgan is not None:
        out["reconstruction"] = score(reader.predict(reconstruct(vqgan, [s.pixels for s in samples])), truths)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Train the phantom reader, save it, and score it on held-out phantoms."
    )
    p.add_argument(
        "--weights", type=Path, default=Path("weights/demo"), help="demo model folder (its vqgan/ is used)"
    )
    p.add_argument("--out", type=Path, default=None, help="where to save (default: WEIGHTS/reader)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="training phantoms")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-val", type=int, default=300, help="held-out phantoms to score on (0 = skip)")
    a = p.parse_args(argv)
    vqgan = load_vqgan(
        a.weights / "vqgan" / "demo-vqgan.yaml", a.weights / "vqgan" / "demo-vqgan.safetensors"
    )
    reader = train_reader(vqgan, a.n, a.steps, a.seed, log=lambda m: print(f"[reader] {m}", flush=True))
    if a.n_val:
        reader.meta["held_out"] = held_out(reader, vqgan, a.n_val)
    reader.save(a.out or a.weights / "reader")
    print(json.dumps(reader.meta, indent=2))


if __name__ == "__main__":
    main()

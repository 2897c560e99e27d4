"""The VQ-GAN autoencoder of LLM-CXR: taming-transformers' VQModel network, written for inference.

Module and parameter names match taming-transformers (``encoder.down.0.block.0.norm1.weight``, ...,
``quantize.embedding.weight``, ``quant_conv``, ``post_quant_conv``) so the official Lightning checkpoint loads
strictly once its training-only ``loss.*`` keys are dropped. This file knows nothing of files: loading/weights.py reads checkpoints into it.

Shapes (official f16 config): image [B, 3, 256, 256] in [-1, 1] -> latents [B, 256, 16, 16] -> codes
[B, 256] (row-major over the 16 x 16 grid) -> image [B, 3, 256, 256].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture of a taming VQModel (the YAML's ``model.params``)."""

    embed_dim: int = 256  # codebook vector size
    n_embed: int = 1024  # codebook entries (image tokens in the LLM)
    ch: int = 128  # base channel count; multiples of 32 (GroupNorm has 32 groups)
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # channel multiplier per resolution level
    num_res_blocks: int = 2  # residual blocks per level (the decoder uses one more)
    attn_resolutions: tuple[int, ...] = (16,)  # feature-map sizes that get a self-attention block
    z_channels: int = 256  # encoder output / decoder input channels
    resolution: int = 256  # input image size in pixels
    in_channels: int = 3  # RGB in
    out_ch: int = 3  # RGB out
    double_z: bool = False  # VQ models use a single z
    dropout: float = 0.0  # inference: no dropout

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> int:
        """Side of the latent grid (16 for the official model)."""
        return self.resolution // self.downsample_factor

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> VQGANConfig:
        """Build from a taming YAML's ``model.params`` mapping (lossconfig and others are ignored)."""
        try:
            dd = params["ddconfig"]
            return cls(
                embed_dim=int(params["embed_dim"]),
                n_embed=int(params["n_embed"]),
                ch=int(dd["ch"]),
                ch_mult=tuple(int(m) for m in dd["ch_mult"]),
                num_res_blocks=int(dd["num_res_blocks"]),
                attn_resolutions=tuple(int(r) for r in dd.get("attn_resolutions", ())),
                z_channels=int(dd["z_channels"]),
                resolution=int(dd["resolution"]),
                in_channels=int(dd.get("in_channels", 3)),
                out_ch=int(dd.get("out_ch", 3)),
                double_z=bool(dd.get("double_z", False)),
                dropout=float(dd.get("dropout", 0.0)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"VQ-GAN config lacks {exc}; expected model.params with embed_dim, n_embed and ddconfig "
                "(ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution)."
            ) from exc

    def to_params(self) -> dict[str, Any]:
        """The inverse of from_params, in taming's YAML layout."""
        return {
            "embed_dim": self.embed_dim,
            "n_embed": self.n_embed,
            "ddconfig": {
                "double_z": self.double_z,
                "z_channels": self.z_channels,
                "resolution": self.resolution,
                "in_channels": self.in_channels,
                "out_ch": self.out_ch,
                "ch": self.ch,
                "ch_mult": list(self.ch_mult),
                "num_res_blocks": self.num_res_blocks,
                "attn_resolutions": list(self.attn_resolutions),
                "dropout": self.dropout,
            },
        }


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        # taming names the 1x1 projection `nin_shortcut` and creates it only when channels change.
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 convolutions (taming's AttnBlock)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Asymmetric padding (right/bottom only), as taming does, keeps the grid aligned with its checkpoints.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: `block` and `attn` lists plus an optional resampler (taming's key layout)."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """[B, in_channels, R, R] -> [B, z_channels, R/f, R/f]."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        in_mult = (1, *cfg.ch_mult)
        res = cfg.resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.ch_mult):
            block_in, block_out = cfg.ch * in_mult[level], cfg.ch * mult
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    attns.append(AttnBlock(block_in))
            down = _Level(blocks, attns)
            if level != len(cfg.ch_mult) - 1:
                down.downsample = Downsample(block_in)
                res //= 2
            self.down.append(down)
        self.mid = _Mid(block_in, cfg.dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for down in self.down:
            for i, block in enumerate(down.block):
                h = block(h)
                if len(down.attn) > 0:
                    h = down.attn[i](h)
            if hasattr(down, "downsample"):
                h = down.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """[B, z_channels, R/f, R/f] -> [B, out_ch, R, R] (unclamped)."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        n = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, 1, 1)
        self.mid = _Mid(block_in, cfg.dropout)
        levels: list[_Level] = []
        for level in reversed(range(n)):
            block_out = cfg.ch * cfg.ch_mult[level]
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    attns.append(AttnBlock(block_in))
            up = _Level(blocks, attns)
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, up)
        # taming indexes `up` from full resolution (up[0]) and runs it in reverse.
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for up in reversed(self.up):
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn) > 0:
                    h = up.attn[i](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantizer; key `quantize.embedding.weight` as in taming."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25):
        super().__init__()
        self.beta = beta  # commitment weight, used only in training
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, C] -> indices [N]: argmin of sum(z^2) + sum(e^2) - 2 z.e in fp32 (taming's formula).

        TF32 matmuls can flip near ties, so the distance product runs in full fp32 precision.
        """
        z = z.float()
        e = self.embedding.weight.float()
        if z.is_cuda:
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
        try:
            d = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()
        finally:
            if z.is_cuda:
                torch.backends.cuda.matmul.allow_tf32 = prev
        return d.argmin(1)


class VQGAN(nn.Module):
    """taming VQModel for inference (plus a straight-through forward for training the demo model)."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        if cfg.ch % 32 or any((cfg.ch * m) % 32 for m in cfg.ch_mult):
            raise ValueError(f"VQ-GAN channel counts must be multiples of 32 (GroupNorm), got ch={cfg.ch}.")
        if cfg.resolution % cfg.downsample_factor:
            raise ValueError(f"resolution {cfg.resolution} is not divisible by {cfg.downsample_factor}.")
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def grid(self) -> int:
        return self.config.grid

    @property
    def n_embed(self) -> int:
        return self.config.n_embed

    @property
    def grid_tokens(self) -> int:
        return self.config.grid**2

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, R, R] in [-1, 1] -> pre-quantization latents [B, embed_dim, g, g]."""
        return self.quant_conv(self.encoder(x))

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, R, R] in [-1, 1] -> codes LongTensor [B, g*g], row-major over the g x g grid."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[-1] != self.resolution:
            raise ValueError(
                f"Expected images [B, {self.config.in_channels}, {self.resolution}, {self.resolution}], "
                f"got {list(x.shape)}."
            )
        p = next(self.parameters())
        z = self.latents(x.to(device=p.device, dtype=p.dtype))
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        return self.quantize.nearest(flat).reshape(b, h * w)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, g*g] -> codebook vectors laid out as latents [B, embed_dim, g, g]."""
        g = self.grid
        if codes.ndim != 2 or codes.shape[1] != g * g:
            raise ValueError(f"Expected codes [B, {g * g}], got {list(codes.shape)}.")
        if codes.min() < 0 or codes.max() >= self.n_embed:
            raise ValueError(f"Codes must lie in [0, {self.n_embed}).")
        z = self.quantize.embedding(codes.to(self.quantize.embedding.weight.device))
        return z.reshape(codes.shape[0], g, g, -1).permute(0, 3, 1, 2).contiguous()

    def decode_latents(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, embed_dim, g, g] -> image [B, 3, R, R], unclamped."""
        return self.decoder(self.post_quant_conv(zq))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, g*g] -> image [B, 3, R, R] clamped to [-1, 1]."""
        return self.decode_latents(self.embed_codes(codes)).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: image -> (reconstruction, codebook + commitment loss, codes [B, g*g])."""
        z = self.latents(x)
        b, c, h, w = z.shape
        idx = self.quantize.nearest(z.detach().permute(0, 2, 3, 1).reshape(-1, c))
        zq = self.quantize.embedding(idx).reshape(b, h, w, c).permute(0, 3, 1, 2)
        loss = F.mse_loss(zq, z.detach()) + self.quantize.beta * F.mse_loss(z, zq.detach())
        zq = z + (zq - z).detach()  # straight-through estimator
        return self.decode_latents(zq), loss, idx.reshape(b, h * w)


def autoencoder_prefixes() -> tuple[str, ...]:
    """Top-level key prefixes an inference checkpoint must hold (anything else but `loss.` is unexpected)."""
    return ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")

"""modeling/vqgan.py against taming-transformers' own network (the independent reference), on tiny configs."""

from __future__ import annotations

import pytest
import torch

from llmcxr_app.modeling.vqgan import VQGAN, VQGANConfig

TINY = VQGANConfig(
    embed_dim=8,
    n_embed=64,
    ch=32,
    ch_mult=(1, 2, 2),
    num_res_blocks=1,
    attn_resolutions=(8,),
    z_channels=16,
    resolution=32,
)


def _taming_reference(cfg: VQGANConfig) -> torch.nn.Module:
    """taming's VQModel pieces assembled without Lightning (same submodule names as VQModel)."""
    taming_model = pytest.importorskip("taming.modules.diffusionmodules.model")
    taming_quantize = pytest.importorskip("taming.modules.vqvae.quantize")
    dd = cfg.to_params()["ddconfig"]
    ref = torch.nn.Module()
    ref.encoder = taming_model.Encoder(**dd)
    ref.decoder = taming_model.Decoder(**dd)
    ref.quantize = taming_quantize.VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=0.25)
    ref.quant_conv = torch.nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
    ref.post_quant_conv = torch.nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
    return ref.eval()


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_state_dict_keys_and_shapes_match_taming():
    ours = VQGAN(TINY)
    ref = _taming_reference(TINY)
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert sorted(ours_sd) == sorted(ref_sd)
    for k, v in ref_sd.items():
        assert ours_sd[k].shape == v.shape, k


def test_official_f16_layout_counts():
    # docs/FORMATS.md: taming's stock f16 config has 343 autoencoder keys and 72.1 M parameters.
    with torch.device("meta"):
        model = VQGAN(VQGANConfig())
    assert len(model.state_dict()) == 343
    n = sum(p.numel() for p in model.parameters())
    assert 72.0e6 < n < 72.2e6
    assert model.grid == 16 and model.grid_tokens == 256


def test_encode_decode_match_taming():
    ours = VQGAN(TINY).eval()
    _randomize(ours, 0)
    ref = _taming_reference(TINY)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    codes = ours.encode_codes(x)
    assert codes.shape == (2, 64) and codes.dtype == torch.long
    with torch.no_grad():
        h = ref.quant_conv(ref.encoder(x))
        _, _, (_, _, ref_idx) = ref.quantize(h)
        torch.testing.assert_close(codes.flatten(), ref_idx.flatten())
        # Decode as upstream does: codebook lookup -> (B, g, g, C) -> post_quant_conv -> decoder.
        zq = ref.quantize.get_codebook_entry(codes.flatten(), shape=(2, 8, 8, TINY.embed_dim))
        ref_img = ref.decoder(ref.post_quant_conv(zq)).clamp(-1, 1)
    torch.testing.assert_close(ours.decode_codes(codes), ref_img, rtol=1e-4, atol=1e-4)


def test_codes_are_row_major():
    model = VQGAN(TINY).eval()
    _randomize(model, 3)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    z = model.latents(x)[0]  # [C, 8, 8]
    codes = model.encode_codes(x)[0]
    e = model.quantize.embedding.weight
    # Check one cell off the diagonal: row 2, column 5 -> flat index 2 * 8 + 5.
    cell = z[:, 2, 5]
    assert codes[2 * 8 + 5] == torch.argmin(((e - cell) ** 2).sum(1))


def test_training_forward_is_differentiable():
    model = VQGAN(TINY)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    rec, loss, codes = model(x)
    assert rec.shape == x.shape and codes.shape == (2, 64)
    (rec.abs().mean() + loss).backward()
    assert model.encoder.conv_in.weight.grad is not None
    assert model.quantize.embedding.weight.grad is not None


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(1, 63, dtype=torch.long), torch.full((1, 64), 64, dtype=torch.long)],
    ids=["wrong-count", "out-of-range"],
)
def test_decode_rejects_bad_codes(bad):
    with pytest.raises(ValueError):
        VQGAN(TINY).decode_codes(bad)


def test_encode_rejects_wrong_size():
    with pytest.raises(ValueError, match="Expected images"):
        VQGAN(TINY).encode_codes(torch.zeros(1, 3, 64, 64))


def test_config_roundtrip_and_channel_check():
    assert VQGANConfig.from_params(TINY.to_params()) == TINY
    with pytest.raises(ValueError, match="multiples of 32"):
        VQGAN(VQGANConfig(ch=48, ch_mult=(1, 2), resolution=32, attn_resolutions=()))
    with pytest.raises(ValueError, match="lacks"):
        VQGANConfig.from_params({"embed_dim": 4})

"""convert.py: official-format tiny checkpoints -> safetensors (sharded, NF4) that load through weights.py alike."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY_VQGAN
from safetensors import safe_open
from safetensors.torch import load_file

from llmcxr_app import protocol
from llmcxr_app.loading.convert import TOKENIZER_FILES, convert_llm, convert_vqgan, infer_codebook_size, main
from llmcxr_app.loading.weights import LoadedLLM, WeightsError, load_llm, load_vqgan, weight_hash

CODEBOOK = TINY_VQGAN.n_embed
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def official_llm(tmp_path_factory, tiny_llm_dir) -> Path:
    """The tiny LLM laid out like the official release: its fp32 weights as one torch.save'd pytorch_model.bin."""
    out = tmp_path_factory.mktemp("official") / "llmcxr-tiny"
    shutil.copytree(tiny_llm_dir, out)
    torch.save(load_file(out / "model.safetensors"), out / "pytorch_model.bin")
    (out / "model.safetensors").unlink()
    return out


@pytest.fixture(params=["this-cpu", "avx512bf16"])
def cpu_4bit_path(request, monkeypatch) -> str:
    """Runs a test as this CPU does, then as a CPU with AVX512-BF16 does: there bitsandbytes repacks every
    Linear4bit built from then on at its first forward (absmax to bf16, a blocked layout; the repack is torch
    code, and the matmul on it runs the same CPU kernel on both sides of each comparison)."""
    if request.param == "avx512bf16":
        bnb = pytest.importorskip("bitsandbytes")
        monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)
    return request.param


def _load(path: Path, quantization: str) -> LoadedLLM:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nf4 on CPU is slow; a pre-quantized config overrides ours
        return load_llm(path, quantization=quantization, device="cpu", codebook_size=CODEBOOK)


def _4bit(llm: LoadedLLM) -> list:
    import bitsandbytes as bnb

    return [m for m in llm.model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _prompt(llm: LoadedLLM) -> torch.Tensor:
    text = protocol.format_prompt(protocol.CXR_TO_REPORT_INSTRUCTIONS[0], "Heart size is normal.")
    return torch.tensor([llm.tokenizer.encode(text, add_special_tokens=False)[:48]])


def _greedy(llm: LoadedLLM) -> list[int]:
    """A short greedy continuation over the whole vocabulary (text and image ids alike)."""
    ids = _prompt(llm)
    with torch.no_grad():
        out = llm.model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    return out[0, ids.shape[1] :].tolist()


def _logits(llm: LoadedLLM) -> torch.Tensor:
    with torch.no_grad():
        return llm.model(_prompt(llm)).logits.float()


def test_infer_codebook_size(official_llm):
    assert infer_codebook_size(official_llm) == CODEBOOK


def test_llm_to_sharded_safetensors_is_lossless(official_llm, tmp_path):
    dst = tmp_path / "fp32"
    written = convert_llm(official_llm, dst, shard_size="100KB")
    shards = sorted(dst.glob("model-*-of-*.safetensors"))
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert len(shards) >= 2 and set(index["weight_map"].values()) == {s.name for s in shards}
    assert not list(dst.glob("*.bin")) and set(shards) <= set(written)
    for name in TOKENIZER_FILES:  # copied byte for byte, not re-saved
        if (official_llm / name).exists():
            assert (dst / name).read_bytes() == (official_llm / name).read_bytes()
    info = json.loads((dst / "conversion.json").read_text())
    assert info["source_weight_hash"] == weight_hash([official_llm / "pytorch_model.bin"])
    assert (info["quantize"], info["dtype"], info["codebook_size"]) == (None, "fp32", CODEBOOK)
    assert str(official_llm.parent) not in (dst / "conversion.json").read_text()  # no local paths

    a, b = _load(official_llm, "fp32"), _load(dst, "fp32")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _greedy(a) == _greedy(b)
    assert a.weight_hash != b.weight_hash and b.layout == a.layout


def test_llm_nf4_equals_loading_the_original_in_4bit(official_llm, tmp_path, capsys, cpu_4bit_path):
    bnb = pytest.importorskip("bitsandbytes")
    dst = tmp_path / "nf4"
    # fp32 is the dtype load_llm quantizes from on CPU, so the files must reproduce it exactly.
    assert main(["llm", str(official_llm), str(dst), "--quantize", "nf4", "--dtype", "fp32"]) == 0
    assert "max |logit difference| 0" in capsys.readouterr().out
    q = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert q["load_in_4bit"] and q["bnb_4bit_quant_type"] == "nf4"
    with safe_open(dst / "model.safetensors", "pt") as f:
        assert any(f.get_slice(k).get_dtype() == "U8" for k in f.keys())  # packed 4-bit weights
    assert (dst / "model.safetensors").stat().st_size < 0.7 * (
        official_llm / "pytorch_model.bin"
    ).stat().st_size

    ref, conv = _load(official_llm, "nf4"), _load(dst, "nf4")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in conv.model.modules())
    assert torch.equal(_logits(ref), _logits(conv))
    assert _greedy(ref) == _greedy(conv)
    repacked = [getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in _4bit(conv)]
    assert all(repacked) == (cpu_4bit_path == "avx512bf16" or bnb.functional.has_avx512bf16())


def test_llm_nf4_default_bf16_equals_quantizing_in_bf16(official_llm, tmp_path, cpu_4bit_path):
    """The default (bf16) file is what load_llm builds on a bf16 GPU: weights cast to bf16, then NF4."""
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dst = tmp_path / "nf4-bf16"
    convert_llm(official_llm, dst, quantize="nf4")
    q = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    ref = AutoModelForCausalLM.from_pretrained(
        official_llm, quantization_config=q, dtype=torch.bfloat16, device_map={"": "cpu"}
    )
    conv = _load(dst, "auto")  # a pre-quantized folder loads as what it is, whatever the device
    assert conv.quantization == "nf4"
    sr, sc = ref.state_dict(), conv.model.state_dict()
    assert sr.keys() == sc.keys() and all(torch.equal(sr[k], sc[k]) for k in sr)
    ids = _prompt(conv)
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, conv.model(ids).logits)


def test_llm_refusals(official_llm, tmp_path, capsys):
    assert main(["llm", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["llm", str(official_llm), str(tmp_path / "out"), "--shard-size", "two gigs"]) == 2
    assert "shard size" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="already holds.*config.json"):
        convert_llm(official_llm, taken)
    with pytest.raises(ValueError, match="fp16 with nf4"):
        convert_llm(official_llm, tmp_path / "x", dtype="fp16")


def test_refuses_an_already_quantized_source(official_llm, tmp_path):
    src = tmp_path / "q"
    shutil.copytree(official_llm, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="already quantized"):
        convert_llm(src, tmp_path / "out")


def test_vqgan_ckpt_to_safetensors_same_codes(tiny_vqgan_files, tmp_path, capsys):
    cfg_path, ckpt_path = tiny_vqgan_files
    dst = tmp_path / "repo" / "vqgan"
    assert main(["vqgan", str(cfg_path), str(ckpt_path), str(dst)]) == 0
    assert "bit for bit" in capsys.readouterr().out
    yaml_out, st_out = dst / "vqgan.yaml", dst / "vqgan.safetensors"
    assert yaml_out.read_bytes() == cfg_path.read_bytes()
    original = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    keys = set(load_file(st_out))
    assert keys == {k for k in original if not k.startswith("loss.")} and len(keys) < len(original)

    a, b = load_vqgan(cfg_path, ckpt_path), load_vqgan(yaml_out, st_out)
    x = (
        torch.rand(
            2,
            TINY_VQGAN.in_channels,
            TINY_VQGAN.resolution,
            TINY_VQGAN.resolution,
            generator=torch.Generator().manual_seed(1),
        )
        * 2
        - 1
    )
    with torch.no_grad():
        codes_a, codes_b = a.encode_codes(x), b.encode_codes(x)
        assert torch.equal(codes_a, codes_b) and codes_a.unique().numel() > 1
        assert torch.equal(a.decode_codes(codes_a), b.decode_codes(codes_b))
    with pytest.raises(WeightsError, match="already holds"):
        convert_vqgan(cfg_path, ckpt_path, dst)


def test_vqgan_without_yaml_writes_an_inferred_one(tiny_vqgan_files, tmp_path):
    cfg_path, ckpt_path = tiny_vqgan_files
    yaml_out, st_out = convert_vqgan(None, ckpt_path, tmp_path, name="inferred")
    inferred = load_vqgan(yaml_out, st_out).config
    assert inferred.n_embed == TINY_VQGAN.n_embed and inferred.ch_mult == TINY_VQGAN.ch_mult
    sa, sb = load_vqgan(cfg_path, ckpt_path).state_dict(), load_file(st_out)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_llm_and_vqgan_share_one_repo_folder(official_llm, tiny_vqgan_files, tmp_path):
    """The layout docs/DEPLOY.md uploads: the LLM at the root, the VQ-GAN in vqgan/."""
    convert_vqgan(*tiny_vqgan_files, tmp_path / "vqgan")
    convert_llm(official_llm, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "vqgan" / "vqgan.safetensors").is_file()


def test_llm_nf4_on_a_cpu_that_repacks_4bit_weights(official_llm, tmp_path, monkeypatch):
    """On a CPU with AVX512-BF16, bitsandbytes repacks each Linear4bit's weights on its first forward (absmax
    to bf16, a blocked layout) and only partly undoes it when saving. The conversion must still write the
    portable layout, byte for byte what it writes elsewhere, and its check must pass."""
    bnb = pytest.importorskip("bitsandbytes")
    plain = tmp_path / "plain"
    convert_llm(official_llm, plain, quantize="nf4")
    # Layers built from here on take the AVX512-BF16 branch of Linear4bit.forward (the repack runs in torch;
    # the matmul on the repacked layout then runs whatever CPU kernel this machine has, the same for both
    # sides of the check).
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)
    repacking = tmp_path / "repacking"
    convert_llm(official_llm, repacking, quantize="nf4")
    a, b = load_file(plain / "model.safetensors"), load_file(repacking / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    llm = _load(repacking, "auto")
    _logits(llm)
    states = [m.weight.quant_state for m in _4bit(llm)]
    assert states and all(getattr(s, "packing_format_for_cpu", False) for s in states)  # the repack ran

"""loading/weights.py: official-format checkpoints built here (tiny), loaded through the app's loaders; bad inputs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from conftest import TINY_VQGAN, TOKENIZER_TEXTS, write_lightning_ckpt, write_vqgan_yaml
from safetensors.torch import save_file

from llmcxr_app import protocol
from llmcxr_app.config import RuntimeConfig
from llmcxr_app.loading.weights import (
    LoadedLLM,
    WeightsError,
    infer_vqgan_config,
    load_llm,
    load_model,
    load_vqgan,
    weight_hash,
)
from llmcxr_app.modeling.vqgan import VQGAN, VQGANConfig

CODEBOOK = TINY_VQGAN.n_embed


def _logits(llm: LoadedLLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return llm.model(ids.to(llm.device)).logits.float()


@pytest.fixture(scope="module")
def ids(tiny_tokenizer) -> torch.Tensor:
    text = protocol.format_prompt(
        protocol.CXR_TO_REPORT_INSTRUCTIONS[0], "Heart size is normal. Lungs are clear."
    )
    return torch.tensor([tiny_tokenizer.encode(text, add_special_tokens=False)[:64]])


@pytest.fixture(scope="module")
def fp32(tiny_llm_dir) -> LoadedLLM:
    return load_llm(tiny_llm_dir, quantization="fp32", device="cpu", codebook_size=CODEBOOK)


def _copy_llm(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A tiny LLM laid out like the official directory, built here: tokenizer files as dolly-v2 ships them
    (tokenizer_class GPTNeoXTokenizer, <|endoftext|> = 0 and <|padding|> = 1, added special tokens),
    config.json with use_cache false, and pytorch_model.bin, a torch.save'd state dict with transformers-4 key
    names and buffers, as DeepSpeed's zero_to_fp32.py writes it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llmcxr_app.modeling.builders import LLMShape, make_llm

    out = tmp_path_factory.mktemp("official") / "llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2"
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t.train_from_iterator([*TOKENIZER_TEXTS * 5, "<image>" * 50], trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>")
    special = list(protocol.SPECIAL_TOKENS)
    tok.add_special_tokens({"additional_special_tokens": special})
    tok.save_pretrained(out)
    eot = "<|endoftext|>"
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "additional_special_tokens": special,
                "bos_token": eot,
                "clean_up_tokenization_spaces": True,
                "eos_token": eot,
                "model_max_length": 2048,
                "tokenizer_class": "GPTNeoXTokenizer",
                "unk_token": eot,
            }
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "additional_special_tokens": special,
                "bos_token": eot,
                "eos_token": eot,
                "pad_token": eot,
                "unk_token": eot,
            }
        )
    )
    shape = LLMShape(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128, max_positions=256)
    model = make_llm(len(tok), CODEBOOK, shape, seed=3).eval()
    sd = OrderedDict(model.state_dict())
    sd["embed_out.weight"] = sd.pop("lm_head.weight")  # transformers 4 named GPT-NeoX's LM head embed_out
    rot = int(shape.hidden_size // shape.num_heads * shape.rotary_pct)
    causal = torch.tril(torch.ones(shape.max_positions, shape.max_positions, dtype=torch.bool))[None, None]
    for i in range(shape.num_layers):
        sd[f"gpt_neox.layers.{i}.attention.bias"] = causal
        sd[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
        sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = 1.0 / 10000 ** (
            torch.arange(0, rot, 2) / rot
        )
    torch.save(sd, out / "pytorch_model.bin")
    model.config.use_cache = False
    model.config.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": 0, "use_cache": False}))
    return out, model


# ---------------------------------------------------------------- LLM


def test_load_llm_fp32_matches_transformers(fp32, tiny_llm_dir, tiny_tokenizer, ids):
    from transformers import GPTNeoXForCausalLM

    assert fp32.quantization == "fp32" and fp32.device == torch.device("cpu")
    assert fp32.model.dtype == torch.float32 and not fp32.model.training
    assert len(fp32.tokenizer) == len(tiny_tokenizer)
    assert (
        fp32.layout.total_vocab
        == fp32.model.get_input_embeddings().weight.shape[0]
        == len(tiny_tokenizer) + 32
    )
    assert fp32.layout.response_key_id == tiny_tokenizer.convert_tokens_to_ids("### Response:\n")
    assert fp32.context_length == 512
    assert fp32.model.generation_config.use_cache is True
    assert fp32.tokenizer.pad_token == fp32.tokenizer.eos_token == "<|endoftext|>"
    assert len(fp32.weight_hash) == 12 and int(fp32.weight_hash, 16) >= 0
    ref = GPTNeoXForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(_logits(fp32, ids), ref(ids).logits, rtol=0, atol=0)


def test_official_pytorch_model_bin_layout(official, fp32, ids):
    path, model = official
    assert "GPTNeoXTokenizer" in (path / "tokenizer_config.json").read_text()
    llm = load_llm(path, quantization="fp32", device="cpu", codebook_size=CODEBOOK)
    assert type(llm.tokenizer).__name__ == "GPTNeoXTokenizer"
    assert llm.layout.total_vocab == model.get_input_embeddings().weight.shape[0]  # no token added on load
    assert llm.tokenizer.convert_ids_to_tokens([0, 1]) == ["<|endoftext|>", "<|padding|>"]
    assert llm.tokenizer.pad_token == "<|endoftext|>"  # upstream pads with eos
    ids = ids.clamp(max=len(llm.tokenizer) - 1)
    with torch.no_grad():
        torch.testing.assert_close(_logits(llm, ids), model(ids).logits, rtol=0, atol=0)
    assert llm.model.generation_config.use_cache is True and llm.model.config.use_cache is True
    assert llm.context_length == 256 and llm.weight_hash != fp32.weight_hash


def test_truncated_download(official, tmp_path):
    d = _copy_llm(official[0], tmp_path / "llm")
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="Cannot read the LLM weights.*truncated download"):
        load_llm(d, device="cpu", codebook_size=CODEBOOK)
    archive = tmp_path / "llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2.tar"
    archive.write_bytes(b"\0" * 1024)
    with pytest.raises(WeightsError, match="downloaded archive; unpack it"):
        load_llm(archive, codebook_size=CODEBOOK)


def test_bf16_close_to_fp32(tiny_llm_dir, fp32, ids):
    llm = load_llm(tiny_llm_dir, quantization="bf16", device="cpu", codebook_size=CODEBOOK)
    assert llm.quantization == "bf16" and llm.model.dtype == torch.bfloat16
    a, b = _logits(fp32, ids), _logits(llm, ids)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.8
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_nf4_uses_bitsandbytes_4bit(tiny_llm_dir, fp32, ids):
    bnb = pytest.importorskip("bitsandbytes")
    with pytest.warns(UserWarning, match="slower than fp32"):
        llm = load_llm(tiny_llm_dir, quantization="nf4", device="cpu", codebook_size=CODEBOOK)
    assert llm.quantization == "nf4"
    linears = [m for n, m in llm.model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert len(linears) == 4 * 2 and all(
        isinstance(m, bnb.nn.Linear4bit) for m in linears
    )  # qkv, dense, 2 MLP
    assert llm.model.get_input_embeddings().weight.shape[0] == fp32.layout.total_vocab
    a, b = _logits(fp32, ids), _logits(llm, ids)
    assert b.shape == a.shape and torch.isfinite(b).all()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.7  # 4-bit weights: close, not equal
    assert not torch.equal(a, b)


def test_weight_hash_is_stable_and_samples_ends(tmp_path):
    a = tmp_path / "a" / "model.bin"
    a.parent.mkdir()
    data = bytearray(os.urandom(3 << 20))  # 3 MiB: first and last MiB are read, the middle MiB is not
    a.write_bytes(data)
    b = _copy_llm(a.parent, tmp_path / "b") / "model.bin"
    assert weight_hash([a]) == weight_hash([b])  # the path does not count
    data[(3 << 20) // 2] ^= 1
    b.write_bytes(data)
    assert weight_hash([a]) == weight_hash([b])  # documented trade-off: the middle is not read
    data[-1] ^= 1
    b.write_bytes(data)
    assert weight_hash([a]) != weight_hash([b])
    b.write_bytes(data + b"x")
    assert weight_hash([a]) != weight_hash([b])


def test_load_model_combines_vqgan_and_llm(tiny_location, tiny_tokenizer):
    llm, vqgan = load_model(tiny_location, RuntimeConfig(device="cpu", quantization="auto"))
    assert llm.quantization == "fp32" and vqgan.n_embed == llm.layout.codebook_size == 32
    assert llm.layout.vocab_size == len(tiny_tokenizer) and not vqgan.training


def test_model_fingerprint_covers_the_vqgan(tiny_location, tmp_path):
    """A swapped VQ-GAN changes every image answer, so it must change the model's weight hash."""
    from dataclasses import replace

    runtime = RuntimeConfig(device="cpu", quantization="auto")
    llm, _ = load_model(tiny_location, runtime)
    assert llm.weight_hash != weight_hash(list(llm.weight_files))  # not the LLM files alone
    torch.manual_seed(1)
    other = VQGAN(TINY_VQGAN)  # same architecture and codebook size, other weights
    write_lightning_ckpt(other, tmp_path / "tiny-vqgan.ckpt")  # same name: only the bytes differ
    swapped, _ = load_model(replace(tiny_location, vqgan_ckpt=str(tmp_path / "tiny-vqgan.ckpt")), runtime)
    assert swapped.weight_hash != llm.weight_hash
    again, _ = load_model(tiny_location, runtime)
    assert again.weight_hash == llm.weight_hash  # and it is stable


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_is_nf4_on_cuda(tiny_location, fp32, ids):
    bnb = pytest.importorskip("bitsandbytes")
    llm, vqgan = load_model(tiny_location, RuntimeConfig(device="auto", quantization="auto"))
    assert llm.quantization == "nf4" and llm.device == torch.device("cuda", torch.cuda.current_device())
    assert isinstance(llm.model.gpt_neox.layers[0].attention.query_key_value, bnb.nn.Linear4bit)
    assert next(vqgan.parameters()).device == llm.device
    a, b = _logits(fp32, ids), _logits(llm, ids).cpu()
    assert torch.isfinite(b).all() and (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.7


def test_llm_missing_directory_points_to_readme(tmp_path, monkeypatch):
    with pytest.raises(
        WeightsError, match=r"LLM directory not found.*llmcxr_mimic-cxr-256.*weights/README.md"
    ):
        load_llm(tmp_path / "nope", codebook_size=CODEBOOK)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a repo id goes to hub.py: never the network in tests
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(
        WeightsError, match="someone/llm-cxr is not in the Hugging Face cache.*HF_HUB_OFFLINE"
    ):
        load_llm("someone/llm-cxr", codebook_size=CODEBOOK)


def test_llm_directory_without_config_names_subdirectory(tiny_llm_dir, tmp_path):
    _copy_llm(tiny_llm_dir, tmp_path / "llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2")
    with pytest.raises(
        WeightsError, match=r"no config.json.*pass .*llmcxr_mimic-cxr-256-txvloss-medvqa-stage1_2"
    ):
        load_llm(tmp_path, codebook_size=CODEBOOK)


def test_llm_without_weights_and_deepspeed_hint(tiny_llm_dir, tmp_path):
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    (d / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"holds no weights.*pytorch_model.bin"):
        load_llm(d, codebook_size=CODEBOOK)
    (d / "global_step1200").mkdir()
    with pytest.raises(WeightsError, match="DeepSpeed checkpoint.*zero_to_fp32.py"):
        load_llm(d, codebook_size=CODEBOOK)


def test_llm_missing_shard(tiny_llm_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    d = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_llm_dir).save_pretrained(d, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llm_dir / name, d / name)
    assert load_llm(d, device="cpu", codebook_size=CODEBOOK).quantization == "fp32"  # complete: loads
    shards = sorted(d.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    with pytest.raises(
        WeightsError, match=rf"1 of {len(shards)} weight shards are missing.*{shards[-1].name}"
    ):
        load_llm(d, codebook_size=CODEBOOK)


def test_llm_wrong_model_type(tiny_llm_dir, tmp_path):
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(
        json.dumps({**conf, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    with pytest.raises(WeightsError, match=r"is a 'llama' model.*GPT-NeoX"):
        load_llm(d, codebook_size=CODEBOOK)


def test_llm_embedding_mismatch(tiny_llm_dir, tiny_tokenizer, tmp_path):
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    tok = type(tiny_tokenizer).from_pretrained(tiny_llm_dir)
    tok.add_tokens(["pneumomediastinum"])
    tok.save_pretrained(d)
    n = len(tiny_tokenizer)
    with pytest.raises(
        WeightsError, match=rf"{n + 32} embedding rows.*holds {n + 1} tokens.*{n + 1} \+ 32 = {n + 33}"
    ):
        load_llm(d, codebook_size=CODEBOOK)
    with pytest.raises(
        WeightsError, match=rf"{n + 32} embedding rows.*{n} \+ 1024"
    ):  # VQ-GAN of another model
        load_llm(tiny_llm_dir, codebook_size=1024)


def test_llm_tokenizer_without_special_token(tiny_llm_dir, tmp_path):
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        text = (d / name).read_text()
        assert "### Response:\\n" in text
        (d / name).write_text(text.replace("### Response:\\n", "### Reply:\\n"))
    with pytest.raises(WeightsError, match=r"Tokenizer in .*special token '### Response:\\n'"):
        load_llm(d, codebook_size=CODEBOOK)
    (d / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match="has no tokenizer"):
        load_llm(d, codebook_size=CODEBOOK)


# ---------------------------------------------------------------- VQ-GAN


@pytest.fixture(scope="module")
def vqgan_and_files(tmp_path_factory) -> tuple[VQGAN, Path, Path]:
    out = tmp_path_factory.mktemp("vq")
    model = VQGAN(TINY_VQGAN).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger than default init so that images spread over many codes
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    write_vqgan_yaml(TINY_VQGAN, out / "vq.yaml")
    write_lightning_ckpt(model, out / "vq.ckpt")  # with loss.* keys
    return model, out / "vq.yaml", out / "vq.ckpt"


def _assert_same_weights(loaded: VQGAN, model: VQGAN) -> None:
    want = model.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float32


def test_vqgan_yaml_and_lightning_ckpt(vqgan_and_files):
    model, yaml_path, ckpt_path = vqgan_and_files
    assert any(k.startswith("loss.") for k in torch.load(ckpt_path, weights_only=True)["state_dict"])
    loaded = load_vqgan(yaml_path, ckpt_path)
    assert loaded.config == TINY_VQGAN
    _assert_same_weights(loaded, model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    codes = model.encode_codes(x)
    assert len(set(codes.flatten().tolist())) > 8  # a meaningful comparison, not all one code
    assert torch.equal(loaded.encode_codes(x), codes)
    assert torch.equal(loaded.decode_codes(codes), model.decode_codes(codes))


def test_vqgan_safetensors_and_inferred_config(vqgan_and_files, tmp_path):
    model, yaml_path, _ = vqgan_and_files
    save_file(model.state_dict(), str(tmp_path / "vq.safetensors"))
    _assert_same_weights(load_vqgan(yaml_path, tmp_path / "vq.safetensors"), model)
    loaded = load_vqgan(None, tmp_path / "vq.safetensors", resolution=32)
    assert loaded.config == TINY_VQGAN
    _assert_same_weights(loaded, model)


class FakeCallback:
    """Stands for the training classes Lightning pickles into a .ckpt (callbacks, hyper-parameters)."""

    def __init__(self) -> None:
        self.best_model_score = torch.tensor(0.123)
        self.monitor = "val/rec_loss"


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_ckpt_with_pickled_classes_loads_without_running_code(vqgan_and_files, tmp_path):
    model, yaml_path, _ = vqgan_and_files
    marker = tmp_path / "pwned"
    sd = {**model.state_dict(), "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4)}
    ckpt = tmp_path / "trained.ckpt"
    torch.save(
        {"state_dict": sd, "callbacks": {"ModelCheckpoint": FakeCallback()}, "x": Exploit(marker)}, ckpt
    )
    with pytest.raises(pickle.UnpicklingError):  # the safe loader refuses, so the restricted one is exercised
        torch.load(ckpt, weights_only=True)
    _assert_same_weights(load_vqgan(yaml_path, ckpt), model)
    assert not marker.exists()


def test_plain_state_dict_ckpt(vqgan_and_files, tmp_path):
    model, yaml_path, _ = vqgan_and_files
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    _assert_same_weights(load_vqgan(yaml_path, tmp_path / "plain.pt"), model)


@pytest.mark.parametrize(
    "config",
    [
        TINY_VQGAN,
        VQGANConfig(
            embed_dim=4,
            n_embed=16,
            ch=32,
            ch_mult=(1, 2, 1),
            num_res_blocks=2,
            attn_resolutions=(8,),
            z_channels=4,
            resolution=32,
            double_z=True,
        ),
    ],
)
def test_infer_vqgan_config_tiny(config):
    sd = dict(VQGAN(config).state_dict())
    sd["loss.logvar"] = torch.zeros(())
    assert infer_vqgan_config(sd, resolution=config.resolution) == config


def test_infer_vqgan_config_official_f16():
    with torch.device("meta"):
        sd = VQGAN(VQGANConfig()).state_dict()
    assert len(sd) == 343
    assert infer_vqgan_config(sd) == VQGANConfig()


def _ckpt_with(tmp_path: Path, sd: dict) -> Path:
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, path)
    return path


def test_vqgan_stray_prefix(vqgan_and_files, tmp_path):
    model, yaml_path, _ = vqgan_and_files
    sd = {**model.state_dict(), "ema.decay": torch.tensor(0.99)}
    with pytest.raises(WeightsError, match=r"under \['ema.'\]; first: \['ema.decay'\]"):
        load_vqgan(yaml_path, _ckpt_with(tmp_path, sd))
    wrapped = {f"model.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match=r"under \['model.'\].*must be stripped"):
        load_vqgan(yaml_path, _ckpt_with(tmp_path, wrapped))


def test_vqgan_missing_key_and_shape_mismatch(vqgan_and_files, tmp_path):
    model, yaml_path, _ = vqgan_and_files
    sd = dict(model.state_dict())
    del sd["decoder.conv_out.bias"]
    with pytest.raises(WeightsError, match=r"lacks 1 keys.*\['decoder.conv_out.bias'\]"):
        load_vqgan(yaml_path, _ckpt_with(tmp_path, sd))
    sd = {**model.state_dict(), "quantize.embedding.weight": torch.zeros(64, 8)}
    with pytest.raises(
        WeightsError, match=r"quantize.embedding.weight: checkpoint \[64, 8\] vs config \[32, 8\]"
    ):
        load_vqgan(yaml_path, _ckpt_with(tmp_path, sd))


def test_vqgan_missing_files(vqgan_and_files, tmp_path):
    _, yaml_path, ckpt_path = vqgan_and_files
    with pytest.raises(WeightsError, match=r"checkpoint not found.*4e-compat.ckpt.*--vqgan-ckpt.*README"):
        load_vqgan(yaml_path, tmp_path / "missing.ckpt")
    with pytest.raises(WeightsError, match=r"config not found.*project-compat.yaml.*LLMCXR_VQGAN_CONFIG"):
        load_vqgan(tmp_path / "missing.yaml", ckpt_path)
    with pytest.raises(WeightsError, match="YAML file given as the checkpoint"):
        load_vqgan(ckpt_path, yaml_path)
    (tmp_path / "empty.yaml").write_text("model: {}\n")
    with pytest.raises(WeightsError, match="not a taming VQ-GAN YAML"):
        load_vqgan(tmp_path / "empty.yaml", ckpt_path)


def test_the_draw_prompt_a_checkpoint_declares_is_read_and_checked(tiny_llm_dir, tmp_path):
    assert load_llm(tiny_llm_dir, codebook_size=CODEBOOK).draw_prompt == "verbatim"  # no key: as typed
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    conf = json.loads((d / "config.json").read_text())
    both = {"llmcxr_draw_prompt": "canonical", "llmcxr_question_prompt": "canonical"}
    (d / "config.json").write_text(json.dumps({**conf, **both}))
    loaded = load_llm(d, codebook_size=CODEBOOK)
    assert loaded.draw_prompt == loaded.question_prompt == "canonical"
    (d / "config.json").write_text(json.dumps({**conf, "llmcxr_draw_prompt": "templates"}))
    with pytest.raises(
        WeightsError, match=r"llmcxr_draw_prompt is 'templates'; this app knows verbatim, canonical"
    ):
        load_llm(d, codebook_size=CODEBOOK)


def test_the_draw_guidance_a_checkpoint_declares_is_read_and_checked(tiny_llm_dir, tmp_path):
    assert load_llm(tiny_llm_dir, codebook_size=CODEBOOK).draw_guidance == 1.0  # no key: unguided
    d = _copy_llm(tiny_llm_dir, tmp_path / "llm")
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**conf, "llmcxr_draw_guidance": 2}))
    assert load_llm(d, codebook_size=CODEBOOK).draw_guidance == 2.0
    for bad in (0.5, 6, "2", True, None):
        (d / "config.json").write_text(json.dumps({**conf, "llmcxr_draw_guidance": bad}))
        with pytest.raises(
            WeightsError, match=r"llmcxr_draw_guidance is .*; it must be a number in \[1, 5\]"
        ):
            load_llm(d, codebook_size=CODEBOOK)

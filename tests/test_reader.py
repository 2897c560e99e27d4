"""The independent image reader (demo/reader.py): scoring, learning on controlled phantoms, save/load, and
training on VQ-GAN reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from llmcxr_app.demo.data.phantoms import LABELS, Findings, make_phantom, render
from llmcxr_app.demo.evaluate import reader as rd
from llmcxr_app.loading.weights import load_vqgan


def test_score_counts_labels_attributes_and_exact_match():
    truths = [Findings(effusion="left", effusion_size="small"), Findings(cardiomegaly=True), Findings()]
    preds = [rd.truth_dict(f) for f in truths]
    preds[0] = {**preds[0], "effusion_side": "right"}  # presence right, side wrong
    preds[1] = {**preds[1], "cardiomegaly": False}  # presence wrong
    s = rd.score(preds, truths)
    assert s["label_accuracy"]["effusion"] == 1.0 and s["label_accuracy"]["cardiomegaly"] == pytest.approx(
        2 / 3
    )
    assert s["label_accuracy_mean"] == pytest.approx((6 + 2 / 3) / 7)
    side = {"accuracy": 0.0, "n": 1, "read_as": {"left": {"right": 1}}}
    assert s["attribute_accuracy"]["effusion_side"] == side
    size = {"accuracy": 1.0, "n": 1, "read_as": {"small": {"small": 1}}}
    assert s["attribute_accuracy"]["effusion_size"] == size
    assert s["attribute_accuracy"]["consolidation_zone"] == {"accuracy": None, "n": 0, "read_as": {}}
    assert s["exact_match_labels"] == pytest.approx(2 / 3) and s["exact_match"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------ reader

SMALL = rd.ReaderConfig(resolution=64, widths=(8, 16, 16), hidden=64, batch=32, lr=5e-3, threads=1)


def _controlled(n: int, first_seed: int) -> tuple[list[Image.Image], list[Findings]]:
    """Balanced, independent cardiomegaly and large effusion (2 x 2 design) on varying anatomy."""
    images, truths = [], []
    for i in range(n):
        f = Findings(
            cardiomegaly=bool(i % 2),
            effusion="bilateral" if (i // 2) % 2 else "none",
            effusion_size="large" if (i // 2) % 2 else "none",
        )
        images.append(render(f, first_seed + i, size=128))
        truths.append(f)
    return images, truths


def test_reader_learns_cardiomegaly_and_effusion():
    images, truths = _controlled(64, 7_000_000)
    net, losses = rd.fit(rd.to_input(images, SMALL.resolution), truths, steps=120, seed=0, config=SMALL)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    reader = rd.Reader(net, SMALL)
    val_images, val_truths = _controlled(40, 7_100_000)  # unseen anatomy; chance is 0.5 on each
    s = rd.score(reader.predict(val_images), val_truths)
    assert s["label_accuracy"]["effusion"] >= 0.9
    assert s["label_accuracy"]["cardiomegaly"] >= 0.75


def test_reader_api_shapes_save_load(tmp_path):
    torch.manual_seed(0)
    reader = rd.Reader(rd.ReaderNet(SMALL).eval(), SMALL, {"vqgan_fingerprint": "x"})
    ph = make_phantom(rd.READER_VAL_SEED_START)
    arr = np.asarray(ph.image.resize((64, 64), Image.LANCZOS))
    # PIL, uint8 arrays and a 3-channel [-1, 1] tensor are the same input.
    as_tensor = torch.from_numpy(arr.copy()).float().div(127.5).sub(1)[None, None].expand(1, 3, 64, 64)
    x_pil, x_arr, x_t = (
        rd.to_input([Image.fromarray(arr)], 64),
        rd.to_input([arr], 64),
        rd.to_input(as_tensor, 64),
    )
    assert (
        x_pil.shape == (1, 1, 64, 64) and torch.equal(x_pil, x_arr) and torch.allclose(x_pil, x_t, atol=1e-6)
    )
    assert rd.to_input([ph.image], 64).shape == (1, 1, 64, 64)  # 256 px is resized
    preds = reader.predict([ph.image, arr])
    assert len(preds) == 2
    for p in preds:
        assert set(p) == {*LABELS, *rd.ATTRIBUTES, "prob"}
        assert p["effusion_side"] in ("none", "left", "right", "bilateral")
        assert (p["effusion_side"] == "none") == (not p["effusion"])
        assert p["effusion"] == (p["prob"]["effusion"] > 0.5)
    reader.save(tmp_path / "r")
    loaded = rd.Reader.load(tmp_path / "r")
    assert loaded.meta == {"vqgan_fingerprint": "x"} and loaded.config == SMALL
    assert loaded.predict([ph.image, arr]) == preds
    with pytest.raises(FileNotFoundError):
        rd.Reader.load(tmp_path / "missing")


def test_train_reader_reconstructions_and_fingerprint(tiny_vqgan_files):
    vqgan = load_vqgan(*tiny_vqgan_files)
    cfg = rd.ReaderConfig(resolution=32, widths=(8, 8), hidden=8, batch=4, recon_fraction=0.5, threads=1)
    reader = rd.train_reader(vqgan, n=4, steps=2, seed=3, config=cfg)
    assert reader.meta["n_reconstructions"] == 2 and reader.meta["seeds"] == [2_003_000, 2_003_004]
    assert reader.meta["vqgan_fingerprint"] == rd.vqgan_fingerprint(vqgan)
    other = load_vqgan(*tiny_vqgan_files)
    with torch.no_grad():
        other.quantize.embedding.weight[0, 0] += 1
    assert rd.vqgan_fingerprint(other) != rd.vqgan_fingerprint(vqgan)
    with pytest.raises(ValueError):
        rd.train_reader(vqgan, n=1_000_000, steps=1)  # would reach the reader's held-out seeds

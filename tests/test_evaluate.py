"""Evaluation of the demo model: metric functions against hand-computed values, the image reader, and a
smoke run of `python -m llmcxr_app.demo.evaluate` on a tiny random model."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from llmcxr_app.config import RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.demo import evaluate as ev
from llmcxr_app.demo import reader as rd
from llmcxr_app.demo.labeler import parse_answer
from llmcxr_app.demo.phantoms import LABELS, Findings, make_phantom, render
from llmcxr_app.demo.reports import answer_for, write_findings_prompt
from llmcxr_app.studio import PreparedImage, Result, Studio, Update
from llmcxr_app.weights import load_vqgan

# ------------------------------------------------------------------------------------------ metrics


def test_prf_matches_hand_computed_values():
    # a: tp 1 (item 0), fn 1 (item 1), fp 1 (item 2) -> P 1/2, R 1/2, F1 1/2, support 2.
    # b: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3, support 1.  c: never true, never predicted -> undefined.
    truth = [
        {"a": 1, "b": 1, "c": 0},
        {"a": 1, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
    ]
    pred = [
        {"a": 1, "b": 1, "c": 0},
        {"a": 0, "b": 1, "c": 0},
        {"a": 1, "b": 0, "c": 0},
        {"a": 0, "b": 0, "c": 0},
    ]
    to_bool = lambda rows: [{k: bool(v) for k, v in r.items()} for r in rows]  # noqa: E731
    out = ev.prf(to_bool(pred), to_bool(truth), labels=("a", "b", "c"))
    a, b, c = (out["per_label"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == (0.5, 0.5, 0.5, 2)
    assert (b["precision"], b["recall"], b["support"]) == (0.5, 1.0, 1)
    assert b["f1"] == pytest.approx(2 / 3)
    assert c == {"precision": None, "recall": None, "f1": None, "support": 0}
    # micro pools the counts: tp 2, fp 2, fn 1 -> P 1/2, R 2/3, F1 4/7; macro averages the defined F1s.
    m = out["micro"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 1)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 7)
    assert out["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        ev.prf(to_bool(pred[:2]), to_bool(truth), labels=("a",))


def test_prf_perfect_and_all_wrong():
    truth = [f.label_vector() for f in (Findings(cardiomegaly=True), Findings(edema=True, ett=True))]
    assert ev.prf(truth, truth)["micro"]["f1"] == 1.0
    flipped = [{k: not v for k, v in t.items()} for t in truth]
    assert ev.prf(flipped, truth)["micro"]["f1"] == 0.0


def test_answers_match_normalises_like_the_labeler():
    assert ev.answers_match("Yes, there is.", "Yes.")
    assert ev.answers_match("large", "Large.")
    assert ev.answers_match("Right upper zone.", "right upper zone")
    assert not ev.answers_match("Left.", "Right.")
    assert not ev.answers_match("No.", "Yes.")


def test_reconstruction_error_known_values():
    a = np.zeros((8, 8), np.uint8)
    b = np.full((8, 8), 51, np.uint8)  # 51/255 = 0.2 -> MSE 0.04 -> PSNR 10 log10(25)
    mae, psnr = ev.reconstruction_error(a, b)
    assert mae == pytest.approx(0.2) and psnr == pytest.approx(10 * math.log10(25))
    assert ev.reconstruction_error(a, a) == (0.0, pytest.approx(100.0))  # finite: the JSON stays valid


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
    assert s["attribute_accuracy"]["effusion_side"] == {"accuracy": 0.0, "n": 1}
    assert s["attribute_accuracy"]["effusion_size"] == {"accuracy": 1.0, "n": 1}
    assert s["attribute_accuracy"]["consolidation_zone"] == {"accuracy": None, "n": 0}
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


# ------------------------------------------------------------------------------------------ the run


@dataclass
class _FixedReader:
    """Says "absent" to everything: its mean accuracy must equal the all-absent floor."""

    meta: dict

    def predict(self, images):
        return [rd.truth_dict(Findings()) for _ in images]


class _OracleStudio:
    """Answers with the ground truth (the phantom's own report and answers), to check the bookkeeping."""

    def __init__(self, studio: Studio):
        self.vqgan, self.info, self._real = studio.vqgan, studio.info, studio
        self.by_codes: dict[tuple, Findings] = {}
        self.reports: dict[tuple, str] = {}

    def prepare(self, image):
        p = self._real.prepare(image)
        ph = next(ph for ph in self._phantoms if ph.image is image)
        self.by_codes[id(p)], self.reports[id(p)] = ph.findings, ph.report
        return p

    def _result(self, text: str, image=None, codes=None) -> Update:
        r = Result("t", text, image, codes, None, {}, {"tokens_per_s": 1.0, "total_s": 0.0})
        return Update(text, image, 0, r)

    def describe(self, p: PreparedImage, *, sampling: SamplingConfig):
        assert sampling.temperature == 0
        yield self._result(self.reports[id(p)])

    def ask(self, question: str, p: PreparedImage, *, sampling: SamplingConfig):
        yield self._result(answer_for(question, self.by_codes[id(p)]))

    def draw(self, findings: str, *, sampling: SamplingConfig, preview_every: int):
        assert sampling.top_p == 0.92 and sampling.seed is not None and preview_every == 0
        codes = [0] * self.vqgan.grid_tokens
        yield self._result("", Image.new("L", (self.vqgan.resolution,) * 2), codes)


@pytest.fixture(scope="module")
def tiny_studio(tiny_location) -> Studio:
    runtime = RuntimeConfig(device="cpu", quantization="fp32", fast_path=False, warmup=False)
    return Studio.from_settings(Settings(model=tiny_location, runtime=runtime))


def test_evaluate_bookkeeping_with_an_oracle(tiny_studio, monkeypatch):
    oracle = _OracleStudio(tiny_studio)
    seeds = range(ev.EVAL_SEED_START, ev.EVAL_SEED_START + 6)
    oracle._phantoms = []
    real_make = ev.make_phantom

    def make(seed):
        ph = real_make(seed)
        oracle._phantoms.append(ph)
        return ph

    monkeypatch.setattr(ev, "make_phantom", make)
    cfg = ev.EvalConfig(n=6, n_draw=4, qa_per_image=3)
    res = ev.evaluate(oracle, _FixedReader({}), cfg, log=lambda _m: None)
    m = res["metrics"]
    assert [ph.seed for ph in oracle._phantoms[:6]] == list(seeds)
    assert m["report"]["micro"]["f1"] == 1.0 and m["report"]["n"] == 6
    assert m["vqa"]["accuracy"] == 1.0 and m["vqa"]["n"] == 18
    d = m["draw"]
    assert d["valid_fraction"] == 1.0 and d["n"] == 4
    assert d["label_accuracy_mean"] == pytest.approx(d["label_accuracy_mean_all_absent"])
    assert res["targets"]["report_micro_f1"]["pass"] and res["targets"]["vqa_accuracy"]["pass"]
    assert parse_answer("Yes.") == "yes"  # the oracle's answers go through the same normalisation


def _demo_dir(tmp_path: Path, tiny_location) -> Path:
    """The tiny fixture model laid out as train.py writes weights/demo (llm/, vqgan/*.yaml + safetensors)."""
    from llmcxr_app.demo.train import save_vqgan

    out = tmp_path / "demo"
    shutil.copytree(tiny_location.llm, out / "llm")
    save_vqgan(load_vqgan(tiny_location.vqgan_config, tiny_location.vqgan_ckpt), out / "vqgan")
    return out


def _short_prompt_seed() -> int:
    """First held-out seed whose draw prompt is a findings list, not a full report: the tiny fixture
    tokenizer (not trained on reports) would need more than its 512-token context for a report."""
    for seed in range(ev.EVAL_SEED_START, ev.EVAL_SEED_START + 50):
        text = write_findings_prompt(make_phantom(seed).findings, np.random.default_rng([seed, 0xD2A]))
        if not text.startswith("FINDINGS:"):
            return seed
    raise AssertionError("no short prompt")


def test_evaluate_cli_smoke(tmp_path, tiny_location, capsys):
    weights = _demo_dir(tmp_path, tiny_location)
    start = _short_prompt_seed()
    args = [
        "--weights",
        str(weights),
        "--n",
        "2",
        "--n-draw",
        "1",
        "--qa-per-image",
        "1",
        "--max-new-tokens",
        "4",
    ]
    args += ["--seed-start", str(start)]
    args += ["--reader-n", "6", "--reader-steps", "2", "--json", "--out", str(tmp_path / "eval.json")]
    assert ev.main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads((tmp_path / "eval.json").read_text())
    assert set(res) >= {"metrics", "targets", "pass", "n", "seeds", "sampling", "timings", "command", "model"}
    m = res["metrics"]
    assert set(m) == {"report", "vqa", "draw", "reconstruction", "reader"}
    assert set(m["report"]["per_label"]) == set(LABELS) and "f1" in m["report"]["micro"]
    assert m["vqa"]["n"] == 2 and 0 <= m["vqa"]["accuracy"] <= 1
    assert m["draw"]["valid_fraction"] == 1.0 and set(m["draw"]["label_accuracy"]) == set(LABELS)
    assert 0 < m["reconstruction"]["mae"] < 1 and m["reconstruction"]["psnr_db"] > 0
    assert set(res["targets"]) == set(ev.TARGETS) and all(
        isinstance(t["pass"], bool) for t in res["targets"].values()
    )
    assert res["sampling"]["describe"]["temperature"] == 0 and res["sampling"]["draw"]["top_p"] == 0.92
    assert res["n"] == {"phantoms": 2, "vqa_questions": 2, "draw": 1}
    assert res["seeds"]["report_vqa_reconstruction"] == [start, start + 2]
    assert res["command"].startswith("python -m llmcxr_app.demo.evaluate --weights")
    # The reader was trained on first use and cached next to the weights; a second run reuses it.
    cached = rd.Reader.load(weights / "reader")
    assert cached.meta["n_phantoms"] == 6
    mtime = (weights / "reader" / rd.WEIGHTS_NAME).stat().st_mtime_ns
    loc = ev.demo_location(weights)
    holder = SimpleNamespace(vqgan=load_vqgan(loc.vqgan_config, loc.vqgan_ckpt))  # all get_reader uses
    assert ev.get_reader(holder, weights / "reader").meta == cached.meta
    assert (weights / "reader" / rd.WEIGHTS_NAME).stat().st_mtime_ns == mtime

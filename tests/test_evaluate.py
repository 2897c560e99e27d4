"""The demo evaluation run (demo/evaluate.py): its bookkeeping against an oracle studio, and a smoke run of
`python -m llmcxr_app.demo.evaluate` on a tiny random model. Scores: test_metrics.py; reader: test_reader.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from phantom_answers import answer_for
from PIL import Image

from llmcxr_app.config import RuntimeConfig, SamplingConfig, Settings
from llmcxr_app.demo.data.phantoms import LABELS, Findings, make_phantom
from llmcxr_app.demo.data.reports import write_findings_prompt
from llmcxr_app.demo.evaluate import draw as eval_draw
from llmcxr_app.demo.evaluate import evaluation as ev
from llmcxr_app.demo.evaluate import reader as rd
from llmcxr_app.loading.weights import load_vqgan
from llmcxr_app.studio.facade import PreparedImage, Result, Studio, Update
from llmcxr_app.studio.labeler import parse_answer

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

    def ask(self, question: str, p: PreparedImage, *, sampling: SamplingConfig, verbatim: bool):
        assert not verbatim  # the harness asks as the app does unless --verbatim
        yield self._result(answer_for(question, self.by_codes[id(p)]))

    def draw(self, findings: str, *, sampling: SamplingConfig, preview_every: int, verbatim: bool):
        assert not verbatim and sampling.top_p == 0.92 and sampling.seed is not None and preview_every == 0
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
    assert m["report"]["consistent_fraction"] == 1.0  # the phantoms' own reports agree with themselves
    assert m["vqa"]["accuracy"] == 1.0 and m["vqa"]["n"] == 18
    d = m["draw"]
    assert d["valid_fraction"] == 1.0 and d["n"] == 4
    assert d["label_accuracy_mean"] == pytest.approx(d["label_accuracy_mean_all_absent"])
    assert res["targets"]["report_micro_f1"]["pass"] and res["targets"]["vqa_accuracy"]["pass"]
    assert parse_answer("Yes.") == "yes"  # the oracle's answers go through the same normalisation


class _SampledOracle(_OracleStudio):
    """The oracle that records each text request's sampling and contradicts itself in every third report."""

    def __init__(self, studio: Studio):
        super().__init__(studio)
        self.samplings: list[tuple[str, SamplingConfig]] = []

    def describe(self, p: PreparedImage, *, sampling: SamplingConfig):
        self.samplings.append(("describe", sampling))
        report = self.reports[id(p)]
        if len(self.samplings) % 3 == 0:  # findings say no effusion, the impression says there is one
            report = "FINDINGS: No pleural effusion. IMPRESSION: Large right pleural effusion."
        yield self._result(report)

    def ask(self, question: str, p: PreparedImage, *, sampling: SamplingConfig, verbatim: bool):
        self.samplings.append(("ask", sampling))
        yield from super().ask(question, p, sampling=sampling, verbatim=verbatim)


def test_text_sampling_default_is_what_the_app_samples_and_consistency_is_counted(tiny_studio, monkeypatch):
    oracle = _SampledOracle(tiny_studio)
    oracle._phantoms = []
    real_make = ev.make_phantom
    monkeypatch.setattr(
        ev, "make_phantom", lambda s: oracle._phantoms.append(real_make(s)) or oracle._phantoms[-1]
    )
    res = ev.evaluate(oracle, None, ev.EvalConfig(n=6, n_draw=0, qa_per_image=1, text_sampling="default"))
    kinds = {kind for kind, _ in oracle.samplings}
    assert kinds == {"describe", "ask"}
    app_default = SamplingConfig()
    for _, s in oracle.samplings:  # the app's defaults, with a fixed seed so a run repeats
        assert (s.temperature, s.top_p, s.top_k, s.seed) == (app_default.temperature, app_default.top_p, 0, 0)
    assert res["metrics"]["report"]["consistent_fraction"] == pytest.approx(
        4 / 6
    )  # reports 3 and 6 contradict
    assert res["sampling"]["describe"]["temperature"] == app_default.temperature
    with pytest.raises(ValueError, match="text_sampling"):
        ev.evaluate(oracle, None, ev.EvalConfig(n=1, n_draw=0, text_sampling="hot"))


class _CandidateOracle(_OracleStudio):
    """Draws candidate k as a grey image of value k; only candidate GOOD shows the findings asked for, and
    only its read-back (self-check) states them; the others read back as normal."""

    GOOD = 2

    def __init__(self, studio: Studio):
        super().__init__(studio)
        self.drawn: dict[int, tuple[int, str]] = {}  # id(image) -> (candidate, prompt)
        self.prompt = ""

    def draw(self, findings: str, *, sampling: SamplingConfig, preview_every: int, verbatim: bool):
        k = (sampling.seed - ev.EVAL_SEED_START) // eval_draw.CANDIDATE_SEED_STRIDE
        image = Image.new("L", (self.vqgan.resolution,) * 2, k)
        self.drawn[id(image)], self.prompt = (k, findings), findings
        yield self._result("", image, [k] * self.vqgan.grid_tokens)

    def describe(self, p: PreparedImage, *, sampling: SamplingConfig, cancel=None):
        assert sampling.temperature == 0 and p.source is None  # a read-back of a drawing's own codes
        yield self._result(self.prompt if p.codes[0] == self.GOOD else "No acute findings.")


class _PixelReader:
    """The judge: reads the truth from the GOOD candidate's image, "absent" from the others."""

    def __init__(self, oracle: _CandidateOracle, truth_of: dict[str, Findings]):
        self.oracle, self.truth_of, self.meta = oracle, truth_of, {}

    def predict(self, images):
        out = []
        for im in images:
            k, prompt = self.oracle.drawn[id(im)]
            out.append(rd.truth_dict(self.truth_of[prompt] if k == _CandidateOracle.GOOD else Findings()))
        return out


def test_draw_candidates_are_chosen_by_self_check_and_the_first_is_scored_too(tiny_studio):
    seeds = range(ev.EVAL_SEED_START, ev.EVAL_SEED_START + 8)
    truths = [make_phantom(s).findings for s in seeds]
    prompts = [
        write_findings_prompt(f, np.random.default_rng([s, 0xD2A]))
        for s, f in zip(seeds, truths, strict=True)
    ]
    oracle = _CandidateOracle(tiny_studio)
    reader = _PixelReader(oracle, dict(zip(prompts, truths, strict=True)))
    kw = {"seed_start": ev.EVAL_SEED_START, "temperature": 1.0, "top_p": 0.92}
    three, _ = eval_draw.evaluate_draw(oracle, reader, truths, candidates=3, **kw)
    assert three["candidates"] == 3 and three["label_accuracy_mean"] == 1.0 and three["exact_match"] == 1.0
    assert three["self_check_agreed_fraction"] == 1.0
    floor = three["label_accuracy_mean_all_absent"]
    assert floor < 1.0 and three["first_candidate"]["label_accuracy_mean"] == pytest.approx(floor)
    # the first candidates drew nothing: detection recall 0 (the headline of one drawing per request)
    assert three["first_candidate"]["prf"]["micro"]["recall"] == 0.0 and three["prf"]["micro"]["f1"] == 1.0
    two, _ = eval_draw.evaluate_draw(oracle, reader, truths, candidates=2, **kw)  # GOOD is never drawn
    assert two["label_accuracy_mean"] == pytest.approx(floor)


def _demo_dir(tmp_path: Path, tiny_location) -> Path:
    """The tiny fixture model laid out as train.py writes weights/demo (llm/, vqgan/*.yaml + safetensors)."""
    from llmcxr_app.loading.writers import save_vqgan

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

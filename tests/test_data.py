"""Phantom samples for training: rendering through the app's preprocessing, and the cache between runs."""

from __future__ import annotations

import numpy as np
import torch

from llmcxr_app.demo.data import samples as data
from llmcxr_app.demo.data.phantoms import Findings, make_phantom


def _first_seeds(**wanted) -> dict[str, int]:
    """The first training seed (below 400) whose phantom's findings each predicate accepts, by name."""
    found: dict[str, int] = {}
    for seed in range(400):
        f = make_phantom(seed, size=16).findings
        for name, match in wanted.items():
            if match(f):
                found.setdefault(name, seed)
    return found


def _examples(tokenizer, samples, **kw):
    """build_examples with the identity codes (code k = cell k), a fixed rng and no plain instructions."""
    codes = [list(range(256)) for _ in samples]
    return data.build_examples(
        tokenizer,
        samples,
        codes,
        codebook_size=256,
        grid_tokens=256,
        rng=np.random.default_rng(0),
        plain_fraction=0.0,
        **kw,
    )


def test_a_grown_training_set_renders_only_the_new_seeds(tmp_path, monkeypatch):
    cache = tmp_path / "samples.pkl"
    first = data.render_samples([0, 1], 64, cache=cache)
    assert cache.exists() and [s.seed for s in first] == [0, 1]
    rendered = []
    real = data.make_phantom

    def counting(seed, **kw):
        rendered.append(seed)
        return real(seed, **kw)

    monkeypatch.setattr(data, "make_phantom", counting)
    grown = data.render_samples([0, 1, 2], 64, cache=cache)
    assert rendered == [2] and [s.seed for s in grown] == [0, 1, 2]
    fresh = data.render_samples([2], 64)  # no cache: drawn again, identical (phantoms are deterministic)
    np.testing.assert_array_equal(grown[2].pixels, fresh[0].pixels)
    assert grown[2].findings == fresh[0].findings and grown[2].pixels.shape == (64, 64)
    rendered.clear()
    assert [s.seed for s in data.render_samples([2, 0], 64, cache=cache)] == [2, 0] and rendered == []
    assert [s.pixels.shape for s in data.render_samples([0], 32, cache=cache)] == [(32, 32)]  # other size
    assert rendered == [0]


def test_a_changed_generator_does_not_reuse_cached_samples(tmp_path, monkeypatch):
    """The cache key holds the generator's version: an edited renderer or report writer renders afresh."""
    cache = tmp_path / "samples.pkl"
    data.render_samples([0, 1], 32, cache=cache)
    rendered = []
    real = data.make_phantom

    def counting(seed, **kw):
        rendered.append(seed)
        return real(seed, **kw)

    monkeypatch.setattr(data, "make_phantom", counting)
    data.render_samples([0, 1], 32, cache=cache)
    assert rendered == []  # same generator: reused
    monkeypatch.setattr(data, "generator_version", lambda: "edited000000")
    data.render_samples([0, 1], 32, cache=cache)
    assert rendered == [0, 1]  # another generator: both drawn again
    rendered.clear()
    data.render_samples([0, 1], 32, cache=cache)
    assert rendered == []  # and the cache now holds the new generator's samples


def test_generator_version_changes_with_a_generator_source(tmp_path, monkeypatch):
    """The version hashes the files that draw a sample: an edited report writer gives another version."""
    from pathlib import Path

    from llmcxr_app.demo.data import reports

    version = data.generator_version()
    assert len(version) == 12 and int(version, 16) >= 0
    edited = tmp_path / "reports.py"
    edited.write_text(Path(reports.__file__).read_text() + "\n# one more line\n")
    monkeypatch.setattr(reports, "__file__", str(edited))
    data.generator_version.cache_clear()
    try:
        assert data.generator_version() != version
    finally:
        data.generator_version.cache_clear()


def test_finding_cells_mark_where_the_findings_are_and_focus_points_at_their_image_ids(tiny_tokenizer):
    seeds = _first_seeds(normal=Findings.is_normal, ptx_right=lambda f: f == Findings(pneumothorax="right"))
    normal, ptx = data.render_samples([seeds["normal"], seeds["ptx_right"]], 128)
    assert data.finding_cells(normal, 16) == []
    cells = data.finding_cells(ptx, 16)
    cols = [k % 16 for k in cells]
    assert cells and max(cols) < 8  # the patient's right lung is on the image's left half
    ex = _examples(tiny_tokenizer, [normal, ptx], qa_per_image=0, focus=[[], cells])
    draws = [e for e in ex if e.task == "draw"]
    assert draws[0].focus == ()
    assert [draws[1].ids[p] - len(tiny_tokenizer) for p in draws[1].focus] == cells  # code k is cell k


def test_mirrored_findings_swap_only_the_sides():
    f = Findings(effusion="left", effusion_size="large", pneumothorax="right", consolidation="right upper")
    m = f.mirrored()
    assert (m.effusion, m.effusion_size, m.pneumothorax, m.consolidation) == (
        "right",
        "large",
        "left",
        "left upper",
    )
    assert m.mirrored() == f and f.is_lateral()
    both = Findings(effusion="bilateral", effusion_size="small", cardiomegaly=True, pacemaker=True)
    assert both.mirrored() == both and not both.is_lateral() and not Findings().is_lateral()


def test_mirror_twins_draw_the_same_anatomy_with_the_finding_on_the_other_side():
    from llmcxr_app.studio import labeler

    seeds = _first_seeds(ptx_left=lambda f: f == Findings(pneumothorax="left"), normal=Findings.is_normal)
    ptx, normal = data.render_samples([seeds["ptx_left"], seeds["normal"]], 128)
    (twin,) = data.mirror_twins([ptx, normal], 128)  # the normal phantom has no twin
    assert twin.seed == ptx.seed and twin.findings == Findings(pneumothorax="right")
    present, details = labeler.read(twin.report)  # the twin's report says what the twin shows
    assert present["pneumothorax"] and details["pneumothorax_side"] == "right"
    # where source and twin differ: both halves (the left lung lost its air-free rim, the right gained it)
    diff = np.abs(ptx.pixels.astype(float) - twin.pixels.astype(float))
    half = diff.shape[1] // 2
    assert diff[:, :half].mean() > 1 and diff[:, half:].mean() > 1
    cols = [k % 16 for k in data.finding_cells(twin, 16)]
    assert cols and max(cols) < 8  # the twin's right pneumothorax is on the image's left half


def test_context_noise_changes_only_drawing_inputs_and_never_the_labels(tiny_tokenizer):
    ex = _examples(tiny_tokenizer, data.render_samples([0, 1], 128), qa_per_image=1)
    ids, _, labels = data.collate(ex, tiny_tokenizer.pad_token_id)
    first = len(tiny_tokenizer)
    kw = {"first_image_id": first, "codebook_size": 256, "grid_tokens": 256}
    noisy = data.corrupt_image_context(ids, ex, fraction=0.3, rng=np.random.default_rng(1), **kw)
    for i, e in enumerate(ex):
        changed = torch.nonzero(noisy[i] != ids[i]).flatten().tolist()
        if e.task != "draw":
            assert changed == []  # an image in the prompt (VQA, report) is never touched
            continue
        image = range(e.n_prompt + 1, e.n_prompt + 257)
        assert changed and set(changed) <= set(image)  # only the drawing's image ids
        assert 0.15 < len(changed) / 256 < 0.45
        assert all(first <= int(t) < first + 256 for t in noisy[i, list(image)])
    assert torch.equal(labels, data.collate(ex, tiny_tokenizer.pad_token_id)[2])
    assert torch.equal(
        data.corrupt_image_context(ids, ex, fraction=0.0, rng=np.random.default_rng(1), **kw), ids
    )

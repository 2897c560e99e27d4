"""Phantom samples for training: rendering through the app's preprocessing, and the cache between runs."""

from __future__ import annotations

import numpy as np

from llmcxr_app.demo.data import samples as data


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

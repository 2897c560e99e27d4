"""demo/examples.py and the shipped assets/examples: held-out phantoms with the findings their names say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmcxr_app.demo.data import examples
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.demo.data.samples import EVAL_SEED_START
from llmcxr_app.imaging.images import load_image

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "examples"


def test_found_seeds_are_held_out_and_match_their_names():
    seeds = examples.find_seeds()
    assert set(seeds) == set(examples.WANTED)
    for name, seed in seeds.items():
        assert seed >= EVAL_SEED_START
        assert examples.WANTED[name](make_phantom(seed, size=16).findings), name


def test_shipped_examples_are_the_phantoms_of_their_seeds():
    index = json.loads((ASSETS / "examples.json").read_text())
    assert set(index) == set(examples.WANTED)
    for name, entry in index.items():
        png = load_image(ASSETS / f"{name}.png")
        expected = make_phantom(entry["seed"], size=png.image.size[0])
        assert np.array_equal(np.asarray(png.image), np.asarray(expected.image)), name
        assert entry["labels"] == expected.findings.label_vector()


def test_dicom_example_is_a_frontal_chest_cr_that_loads_cleanly(tmp_path):
    loaded = load_image(ASSETS / f"{examples.DICOM_EXAMPLE}.dcm")
    assert loaded.source_format == "DICOM" and loaded.warnings == ()
    assert loaded.metadata["modality"] == "CR" and loaded.metadata["view_position"] == "PA"
    png = np.asarray(load_image(ASSETS / f"{examples.DICOM_EXAMPLE}.png").image, dtype=int)
    # 8-bit pixels stored as 12-bit under a full-range window come back within one grey level.
    assert np.abs(np.asarray(loaded.image, dtype=int) - png).max() <= 1

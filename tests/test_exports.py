"""Synthetic mark, PNG and DICOM Secondary Capture round trips, answer JSON/text."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from llmcxr_app.imaging.exports import (
    DISCLAIMER,
    PLACEHOLDER_PATIENT_ID,
    PLACEHOLDER_PATIENT_NAME,
    PROVENANCE_KEY,
    answer_json,
    answer_text,
    mark_box,
    mark_synthetic,
    save_dicom_sc,
    save_png,
)
from llmcxr_app.imaging.images import load_image

PROVENANCE = {
    "model": "LLM-CXR demo",
    "seed": 1234,
    "prompt": "Small left pleural effusion — ünïcode",
    "top_p": 0.92,
}


def _generated(size: int) -> Image.Image:
    rng = np.random.default_rng(size)
    return Image.fromarray(rng.integers(60, 200, (size, size), np.uint8), mode="L")


@pytest.mark.parametrize("size", [128, 512])
def test_mark_is_a_legible_corner_label_and_idempotent(size):
    image = _generated(size)
    marked = mark_synthetic(image)
    left, top, right, bottom = mark_box(image)
    assert (left, top) == (0, 0) and right < size * 0.6 and bottom < size * 0.15
    assert bottom >= 12 and right >= 50  # at least ~10 px text: readable at 128 px
    before, after = np.asarray(image), np.asarray(marked)
    outside = np.ones_like(before, bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(before[outside], after[outside])  # only the corner changes
    label = after[top:bottom, left:right]
    text = (label > 128).mean()
    assert 0.1 < text < 0.6 and set(np.unique(label)) >= {0, 255}  # white glyphs on a black box
    assert np.array_equal(np.asarray(mark_synthetic(marked)), after)
    if size == 512:
        assert bottom > mark_box(_generated(128))[3] * 1.5  # the label grows with the image


def test_png_round_trip_keeps_pixels_and_provenance(tmp_path):
    image = _generated(128)
    path = save_png(image, tmp_path / "out.png", PROVENANCE)
    with Image.open(path) as reread:
        reread.load()
        assert np.array_equal(np.asarray(reread), np.asarray(mark_synthetic(image)))
        text = reread.text
    assert "SYNTHETIC" in text["Description"] and "Research use only" in text["Description"]
    assert text["Software"].startswith("LLM-CXR Studio")
    assert json.loads(text[PROVENANCE_KEY]) == PROVENANCE


def test_dicom_secondary_capture_round_trip(tmp_path):
    image = _generated(128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns on any invalid value or missing file meta element
        path = save_dicom_sc(image, tmp_path / "out.dcm", PROVENANCE)
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    assert np.array_equal(pixels, np.asarray(mark_synthetic(image)))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert (ds.Modality, ds.ConversionType, ds.BurnedInAnnotation) == ("OT", "WSD", "YES")
    assert (ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == (
        "MONOCHROME2",
        8,
        8,
        1,
    )
    assert (str(ds.PatientName), ds.PatientID) == (PLACEHOLDER_PATIENT_NAME, PLACEHOLDER_PATIENT_ID)
    assert ds.PatientBirthDate == "" and ds.StudyDate == ""
    assert "SYNTHETIC" in ds.SeriesDescription and "SYNTHETIC" in ds.ImageComments
    assert json.loads(ds.ImageComments.split("Provenance: ", 1)[1]) == PROVENANCE
    assert ds.preamble == b"\x00" * 128
    uids = {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}
    assert len(uids) == 3 and all(pydicom.uid.UID(u).is_valid for u in uids)
    again = pydicom.dcmread(save_dicom_sc(image, tmp_path / "again.dcm", PROVENANCE))
    assert uids.isdisjoint({again.SOPInstanceUID, again.SeriesInstanceUID, again.StudyInstanceUID})
    # Our own loader reads it back as the same pixels and says it is not a radiograph.
    loaded = load_image(path)
    assert np.array_equal(np.asarray(loaded.image), pixels)
    assert any("secondary capture" in w for w in loaded.warnings)


def test_answer_json_and_text():
    codes = torch.arange(256).remainder(1024)
    payload = json.loads(answer_json("No acute findings.", codes, PROVENANCE))
    assert payload["text"] == "No acute findings." and payload["image_codes"] == list(range(256))
    assert payload["image_grid"] == 16 and payload["provenance"] == PROVENANCE
    assert payload["disclaimer"] == DISCLAIMER
    assert json.loads(answer_json("text only", None, {}))["image_codes"] is None
    assert json.loads(answer_json("odd", np.arange(10), {}))["image_grid"] is None
    with pytest.raises(ValueError):
        answer_json("bad", [-1, 3], {})
    with pytest.raises(ValueError):
        answer_json("bad", [0.5], {})
    text = answer_text("  No acute findings.\n", PROVENANCE | {"params": {"top_k": 0}})
    lines = text.splitlines()
    assert lines[0] == "No acute findings." and DISCLAIMER in lines
    assert "seed: 1234" in lines and 'params: {"top_k": 0}' in lines
    assert json.loads(answer_json("text only", None, {}))["request"] is None


def test_answer_downloads_record_the_request():
    """The question, the mode it ran in and the X-ray file read go into the JSON and TXT downloads."""
    request = {
        "mode": "Ask (auto)",
        "question": "Is the heart enlarged?",
        "input_file": "IM0001.dcm",
        "input_sha256": "ab" * 32,
    }
    payload = json.loads(answer_json("No.", None, PROVENANCE, request))
    assert payload["request"] == request and payload["provenance"] == PROVENANCE
    lines = answer_text("No.", PROVENANCE, request).splitlines()
    assert "question: Is the heart enlarged?" in lines and "mode: Ask (auto)" in lines
    assert f"input_sha256: {'ab' * 32}" in lines and "input_file: IM0001.dcm" in lines
    assert lines.index(DISCLAIMER) < lines.index("mode: Ask (auto)") < lines.index("seed: 1234")

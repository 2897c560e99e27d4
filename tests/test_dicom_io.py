"""DICOM corpus built in memory (tests/dicom_corpus.py): polarity, windowing, codecs, errors, no identifiers."""

from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
import pytest
from dicom_corpus import (
    BACKGROUND,
    BRIGHT,
    MID,
    SECRETS,
    H,
    W,
    jpeg_baseline_dataset,
    jpeg_lossless_dataset,
    make_dataset,
    pattern,
    to_bytes,
    to_stored,
    voi_lut_item,
    with_empty_transfer_syntax,
    with_text_number_of_frames,
    with_voi_lut,
)
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_windowing, get_encoder

from llmcxr_app.imaging.images import ImageLimits, ImageLoadError, load_image
from llmcxr_app.ui import render as ui_render

P = pattern()
EXPECTED = np.rint(P * 255)


def _display(data: bytes) -> np.ndarray:
    loaded = load_image(data)
    assert loaded.source_format == "DICOM" and loaded.image.mode == "L"
    assert loaded.image.size == (W, H)  # not transposed
    return np.asarray(loaded.image, dtype=np.float64)


def _compressed(ds, syntax):
    ds.compress(syntax, generate_instance_uid=False)
    return ds


def _deflated(ds):
    ds.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    return ds


# Each builder stores the pattern so that a correct pipeline shows it exactly (bright square top-left).
LOSSLESS = {
    "mono2_u8": lambda: to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8)),
    "mono1_u8": lambda: to_bytes(
        make_dataset(to_stored(1 - P, 0, 255, np.uint8), 8, photometric="MONOCHROME1")
    ),
    "mono2_u12": lambda: to_bytes(make_dataset(to_stored(P, 0, 4095, np.uint16), 12)),
    "mono1_u16": lambda: to_bytes(
        make_dataset(to_stored(1 - P, 0, 65535, np.uint16), 16, photometric="MONOCHROME1")
    ),
    "signed_i16": lambda: to_bytes(make_dataset(to_stored(P, -2000, 2000, np.int16), 16)),
    "signed_i12": lambda: to_bytes(make_dataset(to_stored(P, -2048, 2047, np.int16), 12)),
    "rescaled": lambda: to_bytes(
        make_dataset(to_stored(P, 0, 4095, np.uint16), 12, RescaleSlope=2, RescaleIntercept=-1024)
    ),
    # A full-range LINEAR window is the identity up to rounding; MONOCHROME1 is inverted after it.
    "mono1_windowed": lambda: to_bytes(
        make_dataset(
            to_stored(1 - P, 0, 4095, np.uint16),
            12,
            photometric="MONOCHROME1",
            WindowCenter=2048,
            WindowWidth=4096,
        )
    ),
    "presentation_inverse": lambda: to_bytes(
        make_dataset(to_stored(1 - P, 0, 4095, np.uint16), 12, PresentationLUTShape="INVERSE")
    ),
    "rle_u12": lambda: to_bytes(
        _compressed(make_dataset(to_stored(P, 0, 4095, np.uint16), 12), uid.RLELossless)
    ),
    "rle_mono1_i16": lambda: to_bytes(
        _compressed(
            make_dataset(to_stored(1 - P, -3000, 3000, np.int16), 16, photometric="MONOCHROME1"),
            uid.RLELossless,
        )
    ),
    "jpeg_lossless_sv1_mono1": lambda: to_bytes(jpeg_lossless_dataset(1 - P, photometric="MONOCHROME1")),
    "deflated": lambda: to_bytes(_deflated(make_dataset(to_stored(P, 0, 4095, np.uint16), 12))),
    "bare_implicit": lambda: to_bytes(
        make_dataset(to_stored(P, 0, 255, np.uint8), 8), part10=False, implicit=True
    ),
    "bare_explicit": lambda: to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8), part10=False),
}


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_corpus_shows_pattern_upright_and_with_correct_polarity(name):
    shown = _display(LOSSLESS[name]())
    assert np.abs(shown - EXPECTED).max() <= 1, name
    assert shown[BRIGHT].min() >= 254 and shown[BACKGROUND].max() <= 1  # bright top-left on dark


def _regions_match(shown: np.ndarray, tolerance: float) -> bool:
    """Lossy codecs ring at the pattern's sharp edges: compare the mean level of each region instead."""
    return all(abs(shown[r].mean() - EXPECTED[r].mean()) <= tolerance for r in (BRIGHT, MID, BACKGROUND))


@pytest.mark.parametrize(
    "syntax",
    [uid.JPEG2000Lossless, uid.JPEGLSLossless, uid.JPEG2000, uid.JPEGLSNearLossless],
    ids=lambda u: u.name,
)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_jpeg_family_codecs_through_pydicom_plugins(syntax, photometric):
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        pytest.skip(f"no {syntax.name} encoder installed here ({'; '.join(encoder.missing_dependencies)})")
    levels = 1 - P if photometric == "MONOCHROME1" else P
    ds = make_dataset(to_stored(levels, 0, 4095, np.uint16), 12, photometric=photometric)
    lossy = {uid.JPEG2000: {"j2k_cr": [10]}, uid.JPEGLSNearLossless: {"jls_error": 3}}
    ds.compress(syntax, generate_instance_uid=False, **lossy.get(syntax, {}))
    shown = _display(to_bytes(ds))
    if syntax in lossy:
        assert _regions_match(shown, 8)
    else:
        assert np.abs(shown - EXPECTED).max() <= 1


def test_jpeg_baseline_encapsulated_from_pillow():
    loaded = load_image(to_bytes(jpeg_baseline_dataset(P)))
    assert loaded.metadata["transfer_syntax"] == "JPEG Baseline (Process 1)"
    assert _regions_match(np.asarray(loaded.image, dtype=np.float64), 4)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_test_encoder_for_jpeg_lossless_is_exact(bits):
    """The corpus's own Process 14 encoder, checked through pydicom's pylibjpeg decoder on noise."""
    noise = np.random.default_rng(bits).integers(0, 2**bits, (H, W)) / (2**bits - 1)
    ds = jpeg_lossless_dataset(noise, bits_stored=bits)
    decoded = pydicom.dcmread(io.BytesIO(to_bytes(ds))).pixel_array
    assert np.array_equal(decoded, to_stored(noise, 0, 2**bits - 1, np.uint16))


def _ramp_dataset(**attributes):
    ramp = np.tile(np.linspace(0, 4095, W).round().astype(np.uint16), (H, 1))
    return ramp, make_dataset(ramp, 12, **attributes)


@pytest.mark.parametrize("function", [None, "LINEAR_EXACT", "SIGMOID"])
def test_first_window_is_used_and_matches_pydicom_reference(function):
    extra = {"VOILUTFunction": function} if function else {}
    ramp, ds = _ramp_dataset(WindowCenter=[1500, 3000], WindowWidth=[1000, 200], **extra)
    loaded = load_image(to_bytes(ds))
    assert loaded.window == (1500.0, 1000.0)
    assert loaded.metadata["voi"] == "window (1 of 2)"
    # pydicom's windowing returns values over the 12-bit range; scale to 8 bits for the comparison.
    reference = np.rint(apply_windowing(ramp, ds, index=0) / 4095 * 255)
    shown = np.asarray(loaded.image, dtype=np.float64)
    assert np.abs(shown - reference).max() <= 1
    assert np.abs(shown - np.rint(apply_windowing(ramp, ds, index=1) / 4095 * 255)).max() > 100


def test_window_in_modality_units_after_rescale_and_ct_warning():
    hu = np.full((H, W), -1000.0)
    hu[BRIGHT], hu[MID] = 240.0, 40.0
    stored = (hu + 1024).astype(np.uint16)
    ds = make_dataset(
        stored,
        12,
        modality="CT",
        view=None,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=40,
        WindowWidth=400,
    )
    loaded = load_image(to_bytes(ds))
    y_min, y_max = -1024.0, 4095.0 - 1024.0  # pydicom's output range for 12-bit stored data after rescale
    reference = (apply_windowing(apply_modality_lut(stored, ds), ds) - y_min) / (y_max - y_min) * 255
    shown = np.asarray(loaded.image, dtype=np.float64)
    assert np.abs(shown - np.rint(reference)).max() <= 1
    assert shown[BRIGHT].min() == 255 and shown[BACKGROUND].max() == 0 and shown[MID].mean() == 128
    assert (loaded.metadata["value_min"], loaded.metadata["value_max"]) == (-1000.0, 240.0)
    counts, edges = loaded.histogram
    width = edges[1] - edges[0]  # integer values: a whole number of them per bin, edges between integers
    assert counts.sum() == H * W and edges[0] == -1000.5 and width == 5 and len(edges) == len(counts) + 1
    assert counts[0] == (hu == -1000).sum() and counts[int((240 - edges[0]) // width)] == (hu == 240).sum()
    assert len(loaded.warnings) == 1 and "CT scan" in loaded.warnings[0]


def test_voi_lut_sequence_first_item_preferred_over_window():
    ramp, ds = _ramp_dataset(WindowCenter=100, WindowWidth=50)
    gamma = np.rint(4095 * (np.arange(4096) / 4095) ** 0.5)  # 12-bit values under a 16-bit descriptor
    with_voi_lut(ds, [voi_lut_item(gamma, 0, 16), voi_lut_item(4095 - gamma, 0, 16)])
    loaded = load_image(to_bytes(ds))
    assert loaded.window is None and loaded.metadata["voi"] == "VOI LUT (1 of 2)"
    expected = np.rint(gamma[ramp] / 4095 * 255)
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - expected).max() <= 1


def test_no_window_uses_full_range_and_reports_it():
    loaded = load_image(LOSSLESS["rescaled"]())
    assert loaded.metadata["voi"].startswith("full range") and loaded.warnings == ()
    assert (loaded.metadata["value_min"], loaded.metadata["value_max"]) == (-1024.0, 2 * 4095 - 1024.0)
    assert loaded.window == ((-1024.0 + 7166.0) / 2, 8190.0)


@pytest.mark.parametrize("compress", [False, True])
def test_multiframe_takes_first_frame_with_warning(compress):
    frames = np.stack([to_stored(P, 0, 4095, np.uint16), to_stored(1 - P, 0, 4095, np.uint16)] * 2)
    ds = make_dataset(frames, 12)
    if compress:
        ds.compress(uid.RLELossless, generate_instance_uid=False)
    loaded = load_image(to_bytes(ds))
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    assert loaded.metadata["frames"] == 4 and any("4 frames" in w for w in loaded.warnings)


def test_rgb_secondary_capture_becomes_gray_with_warning():
    rgb = np.repeat(to_stored(P, 0, 255, np.uint8)[..., None], 3, axis=2)
    loaded = load_image(to_bytes(make_dataset(rgb, 8, photometric="RGB")))
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    assert any("colour" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    "attributes, expected",
    [
        ({}, None),
        ({"view": "AP"}, None),
        ({"view": "LL"}, "lateral view"),
        ({"view": "RLO"}, "oblique view"),
        ({"modality": "MR"}, "MRI"),
        ({"modality": "OT"}, "secondary capture"),
        ({"modality": "XYZ"}, "not recognised"),  # outside the vocabulary: never echoed
        ({"view": "LLD"}, None),  # decubitus: still a frontal projection
        ({"body_part": "ABDOMEN"}, "ABDOMEN"),
    ],
)
def test_not_a_frontal_chest_radiograph_warnings(attributes, expected):
    loaded = load_image(to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8, **attributes)))
    assert "XYZ" not in " ".join(loaded.warnings)
    if expected is None:
        assert loaded.warnings == ()
    else:
        assert len(loaded.warnings) == 1 and expected in loaded.warnings[0]


def test_malformed_window_falls_back_to_full_range():
    data = to_bytes(
        make_dataset(to_stored(P, 0, 4095, np.uint16), 12, WindowCenter="1357", WindowWidth="100")
    )
    assert data.count(b"1357") == 1
    loaded = load_image(data.replace(b"1357", b"ab^c"))  # not a decimal string
    assert loaded.metadata["voi"].startswith("full range") and any("invalid" in w for w in loaded.warnings)
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1


def _bad_lut_depth():
    ds = make_dataset(to_stored(P, 0, 4095, np.uint16), 12)
    with_voi_lut(ds, [voi_lut_item(np.arange(4096), 0, 7)])  # 7 bits per entry is not allowed
    return to_bytes(ds)


def _truncated_pixels():
    return LOSSLESS["mono2_u12"]()[:-1000]


def _no_pixels():
    ds = make_dataset(to_stored(P, 0, 255, np.uint8), 8)
    del ds.PixelData
    return to_bytes(ds)


def _huge_declared():
    ds = make_dataset(to_stored(P, 0, 255, np.uint8), 8, Rows=60000, Columns=60000)
    return to_bytes(ds)


def _no_rows():
    ds = make_dataset(to_stored(P, 0, 255, np.uint8), 8)
    del ds.Rows
    return to_bytes(ds)


def _private_syntax():
    ds = make_dataset(to_stored(P, 0, 255, np.uint8), 8)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    ds.PixelData = encapsulate([b"not a codestream"])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buf.getvalue()


ERRORS = {
    "no_pixel_data": (_no_pixels, "no image"),
    "truncated_native": (_truncated_pixels, "truncated"),
    "truncated_rle": (lambda: LOSSLESS["rle_u12"]()[:-200], "truncated"),
    "truncated_header": (lambda: LOSSLESS["mono2_u12"]()[:200], "no image"),
    "huge_declared": (_huge_declared, "too large"),
    "no_rows": (_no_rows, "image size"),
    "bad_lut_depth": (_bad_lut_depth, "malformed or unsupported"),
    "private_syntax": (_private_syntax, "cannot be decoded"),
}


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("name", sorted(ERRORS))
def test_broken_dicoms_raise_clear_errors(name):
    build, phrase = ERRORS[name]
    with pytest.raises(ImageLoadError, match=phrase) as info:
        load_image(build())
    assert isinstance(info.value, ValueError) and len(str(info.value)) > 30
    assert "1.2.3.4.5.6.7" not in str(info.value)


def test_deflate_bomb_refused_before_inflating():
    ds = _deflated(make_dataset(np.zeros((1024, 1024), np.uint8), 8))
    data = to_bytes(ds)
    assert len(data) < 10_000
    with pytest.raises(ImageLoadError, match="expands"):
        load_image(data, ImageLimits(max_bytes=100_000))


def test_no_identifier_reaches_results_messages_or_logs(caplog, recwarn):
    # Identifiers also hide in malformed coded strings (a name typed into ViewPosition).
    smuggled = to_bytes(
        make_dataset(to_stored(P, 0, 255, np.uint8), 8, view="DOE^JANE", body_part="MRN12345")
    )
    good = [
        smuggled,
        LOSSLESS["rle_mono1_i16"](),
        LOSSLESS["bare_implicit"](),
        LOSSLESS["deflated"](),
        to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8, modality="CT")),
    ]
    bad = [build() for build, _ in ERRORS.values()]
    caplog.clear()  # building the corpus may warn about the smuggled values; loading must not
    recwarn.clear()
    caplog.set_level(logging.DEBUG)  # every logger, pydicom's included
    seen = []
    for data in good:
        loaded = load_image(data)
        seen += [repr(loaded), repr(loaded.metadata), *loaded.warnings]
    smuggled_meta = load_image(smuggled).metadata
    assert smuggled_meta["view_position"] == smuggled_meta["body_part"] == "unrecognised"
    for data in bad:
        with pytest.raises(ImageLoadError) as info:
            load_image(data)
        seen.append(str(info.value))
    seen += [caplog.text, *(str(w.message) for w in recwarn)]
    blob = "\n".join(seen)
    assert "DICOM decoded" in blob and "DICOM" in repr(seen[0])  # the logs and reprs were captured
    for secret in SECRETS:
        assert secret not in blob, secret


def _u12(**attributes) -> pydicom.Dataset:
    return make_dataset(to_stored(P, 0, 4095, np.uint16), 12, **attributes)


@pytest.mark.parametrize("extra", ["whole_frames", "odd_bytes"])
def test_pixel_data_longer_than_declared_shows_the_declared_image_with_a_warning(extra):
    ds = _u12()
    ds.PixelData = ds.PixelData * 3 if extra == "whole_frames" else ds.PixelData + b"\x00" * 100_001 + b"\x00"
    loaded = load_image(to_bytes(ds))  # was a TypeError inside Pillow ("Something went wrong")
    assert loaded.image.size == (W, H)
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    assert any("more image data than its header declares" in w for w in loaded.warnings)


@pytest.mark.parametrize("value", [1e308, -1e308, 1e13])
def test_absurd_window_falls_back_to_the_full_range_and_plots(value):
    loaded = load_image(to_bytes(_u12(WindowCenter=value, WindowWidth=abs(value))))
    assert any("display window is invalid" in w for w in loaded.warnings)
    assert loaded.metadata["voi"].startswith("full range") and loaded.window == (2047.5, 4095.0)
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    plot = ui_render.histogram_plot(*loaded.histogram, loaded.window)  # was an OverflowError
    assert plot.size[0] > 100


def test_text_number_of_frames_is_named_as_such():
    with pytest.raises(ImageLoadError, match=r"number of frames \(NumberOfFrames\) is not a whole number"):
        load_image(to_bytes(with_text_number_of_frames(_u12())))


def test_empty_transfer_syntax_is_reported_as_empty_not_private():
    loaded = load_image(with_empty_transfer_syntax(to_bytes(_u12())))  # native pixels: read as such
    (warning,) = loaded.warnings
    assert warning.startswith("This DICOM file's transfer syntax is missing or empty")
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    ds = make_dataset(to_stored(P, 0, 255, np.uint8), 8)
    ds.PixelData = encapsulate([b"not a codestream"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(ImageLoadError, match="transfer syntax is missing or empty") as info:
        load_image(with_empty_transfer_syntax(to_bytes(ds)))
    assert "private" not in str(info.value)


def _damaged(data: bytes, rng: np.random.Generator, end: int) -> bytes:
    """1 to 12 random bytes of the header (after the preamble, before the pixel values) overwritten; sometimes
    a run of 2-8 bytes (lengths and VRs), sometimes the file cut short."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 13))):
        at = int(rng.integers(128, end))
        run = int(rng.integers(1, 9)) if rng.random() < 0.3 else 1
        out[at : at + run] = rng.integers(0, 256, run, dtype=np.uint8).tobytes()
    if rng.random() < 0.1:
        del out[int(rng.integers(end, len(out))) :]
    return bytes(out)


def test_fuzzed_headers_give_a_picture_or_an_image_load_error(caplog):
    import time

    caplog.set_level(logging.DEBUG)
    data = to_bytes(_u12(WindowCenter=2048, WindowWidth=4096, RescaleSlope=1, RescaleIntercept=0))
    end = data.index(b"\xe0\x7f\x10\x00") + 12  # the Pixel Data tag, VR and length: all header
    rng = np.random.default_rng(20261127)
    outcomes = {"picture": 0, "refused": 0}
    start = time.perf_counter()
    for _ in range(200):
        try:
            loaded = load_image(_damaged(data, rng, end))
        except ImageLoadError as exc:  # any other exception fails the test
            outcomes["refused"] += 1
            text = str(exc)
        else:
            outcomes["picture"] += 1
            assert loaded.image.mode == "L" and loaded.image.size[0] >= 1
            text = " ".join([repr(loaded.metadata), *loaded.warnings])
        for secret in SECRETS:
            assert secret not in text, secret
    assert time.perf_counter() - start < 30  # quick: well under a second each
    assert outcomes["picture"] > 20 and outcomes["refused"] > 20, outcomes  # the damage was varied
    for secret in SECRETS:
        assert secret not in caplog.text, secret

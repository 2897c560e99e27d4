"""Raster formats, content sniffing, size guards, upstream preprocessing and the model's view."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dicom_corpus import (
    BACKGROUND,
    BRIGHT,
    MID,
    SECRETS,
    H,
    W,
    huge_png,
    make_dataset,
    pattern,
    to_bytes,
    to_stored,
)
from PIL import Image

from llmcxr_app.imaging.images import (
    DISPLAY_MAX_SIDE,
    ImageLimits,
    ImageLoadError,
    load_image,
    loaded_model_input,
    model_view,
    tensor_to_image,
    to_model_input,
)

P = pattern()
EXPECTED = np.rint(P * 255)
GRAY = Image.fromarray(to_stored(P, 0, 255, np.uint8), mode="L")


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _shown(data, **kwargs) -> np.ndarray:
    loaded = load_image(data, **kwargs)
    assert loaded.image.mode == "L" and loaded.image.size == (W, H)
    return np.asarray(loaded.image, dtype=np.float64)


def _regions_match(shown: np.ndarray, tolerance: float) -> bool:
    return all(abs(shown[r].mean() - EXPECTED[r].mean()) <= tolerance for r in (BRIGHT, MID, BACKGROUND))


def _palette_with_transparent_square() -> bytes:
    pal = GRAY.convert("P")
    index = pal.getpixel((BRIGHT[1].start, BRIGHT[0].start))
    return _encode(pal, "PNG", transparency=index)


def _rgba_with_transparent_square() -> bytes:
    rgba = GRAY.convert("RGBA")
    alpha = np.full((H, W), 255, np.uint8)
    alpha[BRIGHT] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return _encode(rgba, "PNG")


LOSSLESS = {
    "png_L": lambda: _encode(GRAY, "PNG"),
    "png_16bit_full": lambda: _encode(Image.fromarray(to_stored(P, 0, 65535, np.uint16)), "PNG"),
    "png_16bit_12used": lambda: _encode(Image.fromarray(to_stored(P, 0, 4095, np.uint16)), "PNG"),
    "png_palette": lambda: _encode(GRAY.convert("P"), "PNG"),
    "png_rgba": lambda: _encode(GRAY.convert("RGBA"), "PNG"),
    "png_la": lambda: _encode(GRAY.convert("LA"), "PNG"),
    "png_1bit": lambda: _encode(Image.fromarray(P == 1.0).convert("1"), "PNG"),
    "tiff_16bit": lambda: _encode(Image.fromarray(to_stored(P, 0, 4095, np.uint16)), "TIFF"),
    "tiff_float": lambda: _encode(Image.fromarray((P * 7 - 3).astype(np.float32)), "TIFF"),
}


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_raster_formats_show_the_pattern(name):
    shown = _shown(LOSSLESS[name]())
    expected = np.where(P == 1.0, 255.0, 0.0) if name == "png_1bit" else EXPECTED
    assert np.abs(shown - expected).max() <= 1, name


def test_high_bit_depth_png_reports_bits_used():
    assert load_image(LOSSLESS["png_16bit_12used"]()).metadata["bits_used"] == 12
    assert load_image(LOSSLESS["png_16bit_full"]()).metadata["bits_used"] == 16


@pytest.mark.parametrize("data", [_palette_with_transparent_square, _rgba_with_transparent_square])
def test_transparent_pixels_become_black(data):
    shown = _shown(data())
    assert shown[BRIGHT].max() == 0 and abs(shown[MID].mean() - 128) <= 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_exif_orientation_is_applied(orientation, fmt):
    # Store the pixels so that the EXIF rotation is needed to show the pattern upright.
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = GRAY.transpose(undo[orientation])
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    loaded = load_image(_encode(stored, fmt, exif=exif.tobytes(), **kwargs))
    assert loaded.source_format == fmt
    assert _regions_match(np.asarray(loaded.image, dtype=np.float64), 3)


def test_jpeg_and_colour_warning():
    assert _regions_match(_shown(_encode(GRAY, "JPEG", quality=95)), 3)
    red = Image.merge("RGB", [GRAY, Image.new("L", GRAY.size), Image.new("L", GRAY.size)])
    loaded = load_image(_encode(red, "PNG"))
    assert any("colour" in w for w in loaded.warnings)
    assert load_image(_encode(GRAY.convert("RGB"), "PNG")).warnings == ()  # gray stored as RGB is not colour


@pytest.mark.parametrize("fmt", ["TIFF", "PNG"])
def test_several_pages_or_frames_take_the_first(fmt):
    inverted = GRAY.point(lambda v: 255 - v)
    loaded = load_image(_encode(GRAY, fmt, save_all=True, append_images=[inverted, inverted]))
    assert np.abs(np.asarray(loaded.image, dtype=np.float64) - EXPECTED).max() <= 1
    assert loaded.metadata["frames"] == 3 and any("3 images" in w for w in loaded.warnings)


def test_format_detected_by_content_not_by_name(tmp_path):
    dicom_as_png = tmp_path / "scan.png"
    dicom_as_png.write_bytes(to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8)))
    png_as_dcm = tmp_path / "scan.dcm"
    png_as_dcm.write_bytes(_encode(GRAY, "PNG"))
    jpeg_as_tif = tmp_path / "scan.tif"
    jpeg_as_tif.write_bytes(_encode(GRAY, "JPEG"))
    assert load_image(dicom_as_png).source_format == "DICOM"
    assert load_image(str(png_as_dcm)).source_format == "PNG"
    assert load_image(jpeg_as_tif).source_format == "JPEG"
    with open(png_as_dcm, "rb") as fh:  # file objects work too
        assert np.abs(np.asarray(load_image(fh).image, dtype=np.float64) - EXPECTED).max() == 0


def _truncated(fmt):
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W), np.uint8)), fmt)
    return data[: len(data) // 2]


ERRORS = {
    "zero_bytes": (lambda: b"", "empty"),
    "text": (lambda: b"Findings: no acute cardiopulmonary process.\n", "not an image"),
    "random_bytes": (lambda: np.random.default_rng(1).bytes(4096), "not an image"),
    "pdf": (lambda: b"%PDF-1.7\n%binary\n1 0 obj\n", "PDF"),
    "gif": (lambda: _encode(GRAY, "GIF"), "GIF images are not supported"),
    "bmp": (lambda: _encode(GRAY, "BMP"), "BMP images are not supported"),
    "truncated_png": (lambda: _truncated("PNG"), "damaged or incomplete"),
    "truncated_jpeg": (lambda: _truncated("JPEG"), "damaged or incomplete"),
    "truncated_tiff": (lambda: _truncated("TIFF"), "damaged or incomplete"),
    "png_bomb_header": (lambda: huge_png(100_000, 100_000), "large"),
    "png_over_limit": (lambda: huge_png(9000, 9000), "too large"),
    "png_long_side": (lambda: huge_png(20_000, 10), "too large"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_unreadable_inputs_raise_clear_errors(name):
    build, phrase = ERRORS[name]
    with pytest.raises(ImageLoadError, match=phrase) as info:
        load_image(build())
    assert isinstance(info.value, ValueError)


def test_limits_are_enforced_and_file_names_never_echoed(tmp_path):
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(_encode(GRAY, "PNG"), ImageLimits(max_pixels=W * H - 1))
    with pytest.raises(ImageLoadError, match="upload limit"):
        load_image(_encode(GRAY, "PNG"), ImageLimits(max_bytes=100))
    named = tmp_path / "DOE_JANE_MRN12345.dcm"
    named.write_bytes(to_bytes(make_dataset(to_stored(P, 0, 255, np.uint8), 8))[:-500])
    messages = []
    for source, limits in [
        (named, ImageLimits()),
        (named, ImageLimits(max_bytes=100)),
        (tmp_path / "MRN12345", None),
    ]:
        with pytest.raises(ImageLoadError) as info:
            load_image(source, limits or ImageLimits())
        messages.append(str(info.value))
    assert not any(secret in m for m in messages for secret in SECRETS), messages


def test_blank_image_warns():
    assert any("blank" in w for w in load_image(_encode(Image.new("L", (W, H), 7), "PNG")).warnings)


# --- upstream preprocessing -------------------------------------------------------------------------------


def _by_hand(
    image: Image.Image, new_wh: tuple[int, int], left_top: tuple[int, int], size: int
) -> torch.Tensor:
    """The preprocessing written out for one case: PIL resize + crop, ToTensor, x*2-1."""
    crop = image.convert("RGB").resize(new_wh, Image.Resampling.LANCZOS)
    crop = crop.crop((left_top[0], left_top[1], left_top[0] + size, left_top[1] + size))
    arr = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return torch.from_numpy(arr * np.float32(2) - np.float32(1))[None]


# (width, height, size) -> resized (w, h), crop (left, top) and crop box, all derived by hand:
# 300x200 -> 96x64, left (96-64)/2 = 16, box 16*300/96 = 50 .. 80*300/96 = 250.
# 328x200 -> 64/200*328 = 104.96 -> 105; (105-64)/2 = 20.5 rounds half to even -> 20.
# 129x128 -> 64/128*129 = 64.5 rounds half to even -> 64: nothing is cropped.
# 200x300 (portrait) -> 64x96, top 16.
CASES = [
    ((300, 200, 64), (96, 64), (16, 0), (50.0, 0.0, 250.0, 200.0)),
    ((328, 200, 64), (105, 64), (20, 0), (20 * 328 / 105, 0.0, 84 * 328 / 105, 200.0)),
    ((129, 128, 64), (64, 64), (0, 0), (0.0, 0.0, 129.0, 128.0)),
    ((200, 300, 64), (64, 96), (0, 16), (0.0, 50.0, 200.0, 250.0)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_to_model_input_matches_upstream_preprocessing(case):
    (w, h, size), new_wh, left_top, box = case
    rng = np.random.default_rng(w * h)
    image = Image.fromarray(rng.integers(0, 256, (h, w), np.uint8), mode="L")
    model_input = to_model_input(image, size)
    assert model_input.tensor.shape == (1, 3, size, size) and model_input.tensor.dtype == torch.float32
    assert torch.equal(model_input.tensor, _by_hand(image, new_wh, left_top, size))
    assert model_input.crop_box == pytest.approx(box)
    assert model_input.image.size == (size, size)
    assert -1 <= model_input.tensor.min() and model_input.tensor.max() <= 1
    assert torch.equal(model_input.tensor[0, 0], model_input.tensor[0, 2])  # gray in, identical channels


def test_to_model_input_refuses_extreme_aspect():
    with pytest.raises(ImageLoadError, match="elongated"):
        to_model_input(Image.new("L", (900, 100)), 64)


def test_tensor_to_image_rounds_mean_of_channels():
    x = torch.tensor([[-1.0, 1.0], [0.0, 0.5]]).expand(3, 2, 2).clone()
    assert np.asarray(tensor_to_image(x)).tolist() == [[0, 255], [128, 191]]  # 127.5 -> 128, 191.25 -> 191
    mixed = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), -1.0), torch.full((2, 2), -1.0)])
    assert np.asarray(tensor_to_image(mixed[None])).tolist() == [[85, 85], [85, 85]]
    assert np.asarray(tensor_to_image(torch.full((3, 1, 1), 3.0))).item() == 255  # clamped
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


class FakeVQGAN(torch.nn.Module):
    """Stand-in with the VQGAN interface: codes = gray block means quantised to n_embed levels."""

    def __init__(self, resolution: int = 64, grid: int = 16, n_embed: int = 32):
        super().__init__()
        self.resolution, self.grid, self.n_embed = resolution, grid, n_embed
        self.gain = torch.nn.Parameter(torch.ones(()))

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        blocks = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), self.grid)
        return ((blocks + 1) / 2 * (self.n_embed - 1)).round().long().flatten(1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        levels = codes.float().view(-1, 1, self.grid, self.grid) / (self.n_embed - 1) * 2 - 1
        up = F.interpolate(levels, scale_factor=self.resolution // self.grid, mode="nearest")
        return (up * self.gain).expand(-1, 3, -1, -1).clamp(-1, 1)


def test_model_view_encodes_the_crop_and_decodes_its_codes():
    vqgan = FakeVQGAN()
    image = Image.fromarray(to_stored(P, 0, 255, np.uint8)).resize((96, 72), Image.Resampling.NEAREST)
    view = model_view(image, vqgan)
    assert view.codes.shape == (256,) and view.codes.dtype == torch.int64 and view.codes.device.type == "cpu"
    # 96x72 -> 85x64 (64/72*96 = 85.33), left offset round(10.5) = 10 (half to even).
    assert view.model_input.crop_box == pytest.approx((10 * 96 / 85, 0, 74 * 96 / 85, 72))
    # Independent check in numpy: 4x4 block means of the crop, quantised, decoded, back to 8 bits.
    crop = np.asarray(view.model_input.image, dtype=np.float64)[..., 0] / 255 * 2 - 1
    blocks = crop.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    codes = np.rint((blocks + 1) / 2 * 31)
    assert np.array_equal(view.codes.numpy().reshape(16, 16), codes)
    expected = np.kron(np.rint((codes / 31) * 255), np.ones((4, 4)))
    assert view.reconstruction.size == (64, 64) and view.reconstruction.mode == "L"
    assert np.abs(np.asarray(view.reconstruction, dtype=np.float64) - expected).max() <= 1
    # The bright square (top-left of the film) is still top-left in what the model sees.
    assert view.codes.reshape(16, 16)[2:4, 2:4].min() > 25 and view.codes.reshape(16, 16)[8, 8] < 3


# --- what is kept of an upload, and the memory it takes ---------------------------------------------------


def test_large_upload_keeps_a_bounded_display_copy_and_the_exact_model_input():
    rng = np.random.default_rng(5)
    full = Image.fromarray(rng.integers(0, 256, (2300, 3100), np.uint8), mode="L")
    loaded = load_image(_encode(full, "PNG"), model_sizes=(32, 64))
    assert loaded.size == (3100, 2300) and loaded.metadata["width"] == 3100
    assert max(loaded.image.size) == DISPLAY_MAX_SIDE and loaded.image.size == (2048, 1519)
    for size in (32, 64):  # made from the full-resolution decode: exactly upstream's input
        reference = to_model_input(full, size)
        assert torch.equal(loaded.model_inputs[size].tensor, reference.tensor)
        assert loaded.model_inputs[size].crop_box == reference.crop_box
    # A resolution not asked for comes from the display copy, its crop box in the upload's pixels.
    other = loaded_model_input(loaded, 48)
    assert other.tensor.shape == (1, 3, 48, 48)
    assert other.crop_box == pytest.approx(to_model_input(full, 48).crop_box, abs=2.0)


def test_small_upload_is_kept_whole_and_pixel_only():
    data = _encode(GRAY, "PNG", pnginfo=_text_chunks({"PatientName": "DOE^JANE", "PatientID": "MRN12345"}))
    loaded = load_image(data)
    assert loaded.size == loaded.image.size == (W, H) and np.array_equal(np.asarray(loaded.image), EXPECTED)
    assert loaded.image.info == {}


def _text_chunks(values: dict[str, str]):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in values.items():
        info.add_text(key, value)
    return info


BIG_W, BIG_H = 10_000, 6_000  # 60 megapixels: the largest upload the default limits accept
MEASURE = r"""
import ctypes, gc, json, resource, sys
from llmcxr_app.imaging import images as imaging

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

def settle():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so RSS shows what is still held

imaging.load_image(sys.argv[2])  # a small warm-up: Pillow plugins and pydicom decoders imported
settle()
base_peak, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss()
kept = [imaging.load_image(sys.argv[1], model_sizes=(256,)) for _ in range(3)]  # three sessions' uploads
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_peak
settle()
one = kept[0]
buffers = one.image.width * one.image.height + sum(
    m.tensor.numel() * m.tensor.element_size() + 3 * m.image.width * m.image.height
    for m in one.model_inputs.values()
) + sum(a.nbytes for a in (one.histogram or ()))
print(json.dumps({"peak": peak, "resident": (rss() - base) / len(kept), "buffers": buffers,
                  "display": list(one.image.size), "size": list(one.size)}))
"""


def _big_levels() -> np.ndarray:
    y = np.linspace(0, 1, BIG_H, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, BIG_W, dtype=np.float32)[None, :]
    return 0.5 + 0.25 * np.sin(40 * x) * np.cos(30 * y) + 0.2 * x * y  # structure, so JPEG has work to do


def _write_big(kind: str, path) -> None:
    levels = _big_levels()
    if kind == "png8":
        Image.fromarray(np.rint(levels * 255).astype(np.uint8)).save(path, format="PNG", compress_level=1)
    elif kind == "png16":
        Image.fromarray(np.rint(levels * 65535).astype(np.uint16)).save(path, format="PNG", compress_level=1)
    elif kind == "jpeg_rgb":
        g = np.rint(levels * 255).astype(np.uint8)
        Image.fromarray(np.stack([g, np.roll(g, 50, 1), g], axis=2)).save(path, format="JPEG", quality=85)
    else:
        stored = np.rint(levels * 4095).astype(np.uint16)
        path.write_bytes(to_bytes(make_dataset(stored, 12, WindowCenter=2048, WindowWidth=4096)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["png8", "png16", "jpeg_rgb", "dicom16"])
def test_60_megapixel_upload_decodes_in_bounded_memory_and_keeps_little(kind, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    big, small = tmp_path / f"big.{kind}", tmp_path / "small.png"
    _write_big(kind, big)
    GRAY.save(small)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big), str(small)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["size"] == [BIG_W, BIG_H] and max(got["display"]) == DISPLAY_MAX_SIDE
    mb = 2**20
    assert got["peak"] <= 600 * mb, f"decode peak {got['peak'] / mb:.0f} MB"
    assert got["resident"] <= 16 * mb, f"kept per upload {got['resident'] / mb:.1f} MB (RSS)"
    assert got["buffers"] <= 16 * mb, f"kept per upload {got['buffers'] / mb:.1f} MB (buffers)"

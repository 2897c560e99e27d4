"""Uploads -> grayscale display image with safe metadata; image <-> VQ-GAN tensor (upstream's preprocessing).

`load_image` reads PNG, JPEG, TIFF and DICOM (detected by content, never by file name) into an 8-bit "L"
image, refusing anything it cannot show faithfully with an `ImageLoadError` worded for a clinician.
`to_model_input` reproduces LLM-CXR's preprocessing exactly (torchvision's PIL path, without torchvision)
and reports the centre crop, which silently cuts non-square films upstream. `model_view` shows what the LLM
actually receives: the crop and its VQ-GAN reconstruction from the 16x16 codes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings as pywarnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, ImageChops, UnidentifiedImageError

from llmcxr_app.imaging.dicom import (
    DEFAULT_LIMITS,
    ImageLimits,
    ImageLoadError,
    is_dicom,
    looks_like_bare_dicom,
    read_dicom,
)
from llmcxr_app.redact import strip_metadata

__all__ = [
    "DEFAULT_LIMITS",
    "ImageLimits",
    "ImageLoadError",
    "LoadedImage",
    "ModelInput",
    "ModelView",
    "DISPLAY_MAX_SIDE",
    "codes_to_image",
    "load_image",
    "loaded_model_input",
    "model_view",
    "tensor_to_image",
    "to_model_input",
]

logger = logging.getLogger(__name__)

_PIL_FORMATS = ("PNG", "JPEG", "TIFF")  # JPEG includes MPO (JPEG with extra images), reported as JPEG
MAX_ASPECT = 8.0  # longest / shortest side beyond which the centre crop would be meaningless
SUPPORTED = "PNG, JPEG, TIFF or DICOM"
DISPLAY_MAX_SIDE = 2048  # longest side of the display copy kept per upload (4 MB at most in mode "L")
STRIP_PIXELS = 1 << 21  # pixels per strip when converting a decode to gray (16 MB per int16 RGB temporary)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose)


@dataclass(frozen=True, eq=False)
class ModelInput:
    """What the VQ-GAN encoder receives, and where it came from in the original image."""

    tensor: torch.Tensor  # [1, 3, size, size] float32 in [-1, 1] on CPU (three identical channels for gray)
    crop_box: tuple[float, float, float, float]  # (left, top, right, bottom) in ORIGINAL image pixels
    image: Image.Image  # the resized, cropped RGB image the tensor was made from (size x size)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """What the app keeps of an upload: a bounded display copy, safe metadata and the model's input.

    Never holds names, IDs, dates or UIDs, nor the full-resolution decode (a 60-megapixel upload keeps about
    5 MB: the display copy plus one model input).
    """

    image: Image.Image  # mode "L", 8-bit, upright, longest side <= DISPLAY_MAX_SIDE; no metadata (info = {})
    source_format: str  # "PNG", "JPEG", "TIFF" or "DICOM" (from the content, not the file name)
    metadata: dict[str, str | int | float]  # safe fields: width, height, mode/photometric, bits, modality...
    warnings: tuple[str, ...] = ()  # for the user: wrong modality/view, several frames, colour, blank
    window: tuple[float, float] | None = None  # DICOM: (centre, width) in modality units, None for a VOI LUT
    histogram: tuple[np.ndarray, np.ndarray] | None = None  # DICOM: (counts[256], edges[257]) modality values
    original_size: tuple[int, int] | None = None  # (width, height) of the decoded upload; None: image.size
    # Upstream's crop per VQ-GAN resolution (px), made from the full-resolution decode (load_image's
    # model_sizes) before it was dropped, so the model sees exactly what it would have seen.
    model_inputs: Mapping[int, ModelInput] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upload in pixels, the frame that crop boxes refer to."""
        return self.original_size or self.image.size


@dataclass(frozen=True, eq=False)
class ModelView:
    """The model's view of an upload: its input crop and the VQ-GAN reconstruction of its codes."""

    model_input: ModelInput  # the crop (model_input.image) and crop box
    reconstruction: Image.Image  # mode "L", decode of `codes` (resolution x resolution)
    codes: torch.Tensor  # [grid * grid] int64 on CPU, row-major VQ indices (what the LLM receives, unshifted)


def _read_source(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, limit: int) -> bytes:
    too_big = f"The file is larger than the upload limit ({limit / 2**20:.0f} MB)."
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(limit + 1)
    else:
        try:  # the file name may itself identify a patient: it is never echoed
            if os.stat(source).st_size > limit:
                raise ImageLoadError(too_big)
            with open(source, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError:
            raise ImageLoadError("The file could not be opened (missing or unreadable).") from None
    if len(data) > limit:
        raise ImageLoadError(too_big)
    return data


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ImageLoadError(
            f"This image is too large ({width} x {height} pixels); the limit is "
            f"{limits.max_pixels / 1e6:.0f} megapixels and {limits.max_side} pixels per side."
        )


def _strips(im: Image.Image) -> Iterator[tuple[int, int, int, int]]:
    """Boxes of horizontal strips of about STRIP_PIXELS pixels: conversions run strip by strip, so a
    60-megapixel upload never has a full-size float64 or int16 RGB copy (peak memory stays bounded)."""
    step = max(1, STRIP_PIXELS // max(1, im.width))
    for top in range(0, im.height, step):
        yield (0, top, im.width, min(im.height, top + step))


def _finite(strip: Image.Image) -> np.ndarray:
    return np.nan_to_num(np.asarray(strip).astype(np.float64))


def _high_bit_depth_to_l(im: Image.Image, meta: dict) -> Image.Image:
    """16/32-bit integer or float gray -> 8 bits without changing relative brightness where possible.

    Unsigned integers are scaled by the smallest bit depth (>= 8) that holds their maximum, so 12-bit data in
    a 16-bit PNG is not shown nearly black; negative or floating-point data is stretched min..max.
    """
    lo, hi = np.inf, -np.inf
    for box in _strips(im):
        arr = _finite(im.crop(box))
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    integer = np.asarray(im.crop((0, 0, 1, 1))).dtype.kind in "ui"
    if integer and lo >= 0 and hi <= 65535:
        bits = max(8, math.ceil(math.log2(int(hi) + 1)))
        meta["bits_used"] = bits
        offset, divisor = 0.0, float(2**bits - 1)
    else:
        meta["bits_used"] = "min-max stretched"
        offset, divisor = lo, (hi - lo if hi > lo else np.inf)  # a flat image maps to 0
    out = Image.new("L", im.size)
    for box in _strips(im):
        unit = (_finite(im.crop(box)) - offset) / divisor
        out.paste(Image.fromarray(np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8), mode="L"), box[:2])
    return out


def _colour_strip_to_l(strip: Image.Image) -> tuple[Image.Image, int]:
    """(gray strip, number of clearly coloured pixels) for a strip of a non-gray image."""
    if strip.mode in ("1", "P", "PA", "LA", "La", "RGBA", "RGBa") or "transparency" in strip.info:
        # Transparent regions carry no signal: composite over black, the colour of "no X-ray attenuation".
        rgba = strip.convert("RGBA")
        strip = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    rgb = strip.convert("RGB")
    r, g, b = rgb.split()  # chroma = max - min over the channels, in Pillow's C loops (numpy's axis-2
    chroma = ImageChops.subtract(  # reductions took seconds on a 60-megapixel photo)
        ImageChops.lighter(ImageChops.lighter(r, g), b), ImageChops.darker(ImageChops.darker(r, g), b)
    )
    coloured = sum(chroma.histogram()[17:])  # pixels whose channels differ by more than 16 levels
    return rgb.convert("L"), coloured


def _to_gray8(im: Image.Image, meta: dict, warnings: list[str]) -> Image.Image:
    if im.mode == "L":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return _high_bit_depth_to_l(im, meta)
    out, coloured = Image.new("L", im.size), 0
    for box in _strips(im):
        gray, n = _colour_strip_to_l(im.crop(box))
        out.paste(gray, box[:2])
        coloured += n
    if coloured > 0.01 * im.width * im.height:
        warnings.append("This image is in colour; it was converted to grayscale.")
    return out


def _orientation(im: Image.Image) -> Image.Transpose | None:
    """The EXIF orientation's transpose (phone photos of films), read from the header, not the pixels."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # a damaged EXIF block: show the image as stored
        return None
    return _ORIENTATION.get(value)


def _load_pil(data: bytes, limits: ImageLimits, model_sizes: Sequence[int]) -> LoadedImage:
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            width, height = im.size
            _check_pixels(width, height, limits)  # before decoding a single pixel
            fmt = "JPEG" if im.format == "MPO" else str(im.format)
            frames = int(getattr(im, "n_frames", 1))
            meta: dict[str, str | int | float] = {"mode": im.mode, "frames": frames}
            warnings: list[str] = []
            im.load()
            transpose = _orientation(im)  # after load(): Pillow's TIFF loader may apply (and drop) it itself
            gray = _to_gray8(im, meta, warnings)
            if transpose is not None:
                gray = gray.transpose(transpose)
    except (ImageLoadError, UnidentifiedImageError):
        raise
    except Image.DecompressionBombError:
        raise ImageLoadError("This image declares an absurdly large size and was refused.") from None
    except Exception as exc:  # Pillow's plugins raise many types on damaged data; only the type is logged
        logger.info("image unreadable (%s)", type(exc).__name__)
        raise ImageLoadError(
            "This image file is damaged or incomplete (truncated?) and could not be read. "
            "Please export or download it again."
        ) from None
    if frames > 1:
        warnings.insert(0, f"This file holds {frames} images (pages/frames); only the first one is used.")
    logger.debug("%s decoded: %dx%d mode %s", fmt, gray.width, gray.height, meta["mode"])
    return _keep(gray, fmt, meta, warnings, model_sizes)


def _keep(
    gray: Image.Image, fmt: str, meta: dict, warnings: list[str], model_sizes: Sequence[int], **dicom
) -> LoadedImage:
    """The LoadedImage of a full-resolution gray decode: model inputs from it, then a bounded display copy."""
    meta.update(width=gray.width, height=gray.height)
    lo, hi = gray.getextrema()
    if lo == hi and not any("blank" in w for w in warnings):
        warnings.append("The image is blank: every pixel has the same value.")
    inputs = {int(size): to_model_input(gray, int(size)) for size in dict.fromkeys(model_sizes)}
    display = gray
    if max(gray.size) > DISPLAY_MAX_SIDE:
        scale = DISPLAY_MAX_SIDE / max(gray.size)
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        display = gray.resize(size, Image.LANCZOS, reducing_gap=3.0)  # reduce() first: fast, little memory
    return LoadedImage(
        image=strip_metadata(display),
        source_format=fmt,
        metadata=meta,
        warnings=tuple(warnings),
        original_size=gray.size,
        model_inputs=inputs,
        **dicom,
    )


def _unsupported_message(data: bytes) -> str:
    if data[:5] == b"%PDF-":
        return f"This is a PDF document, not an image. Please upload the X-ray itself as {SUPPORTED}."
    try:
        with _quiet_pil(), Image.open(io.BytesIO(data)) as im:  # another format Pillow knows: name it
            return f"{im.format} images are not supported; please convert the image to PNG or upload {SUPPORTED}."
    except Exception:
        return f"This file is not an image that can be read. Please upload a chest X-ray as {SUPPORTED}."


@contextmanager
def _quiet_pil() -> Iterator[None]:
    """Pillow's warnings about damaged metadata (EXIF, text chunks) are not for the log: they may quote it."""
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        yield


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    limits: ImageLimits = DEFAULT_LIMITS,
    model_sizes: Sequence[int] = (),
) -> LoadedImage:
    """Read an uploaded chest X-ray (PNG 8/16-bit, palette, alpha; JPEG; TIFF; DICOM) as an 8-bit gray image.

    The format is detected from the content. Raises ImageLoadError (a ValueError) with a message for the
    user on empty, unknown, truncated, oversized or pixel-less files. DICOM goes through dicom.read_dicom
    (modality LUT, first VOI LUT or window, MONOCHROME1 inversion, first frame). `model_sizes` (VQ-GAN
    resolutions in px) are the model inputs to make from the full-resolution decode before it is dropped;
    only a display copy (longest side <= DISPLAY_MAX_SIDE) is kept.
    """
    data = _read_source(source, limits.max_bytes)
    if not data:
        raise ImageLoadError(f"The file is empty (0 bytes). Please upload a chest X-ray as {SUPPORTED}.")
    if is_dicom(data):
        return _from_dicom(data, limits, model_sizes)
    try:
        with _quiet_pil():
            return _load_pil(data, limits, model_sizes)
    except UnidentifiedImageError:
        pass
    if looks_like_bare_dicom(data):  # old DICOM written without the 128-byte preamble and "DICM"
        return _from_dicom(data, limits, model_sizes)
    raise ImageLoadError(_unsupported_message(data))


def _from_dicom(data: bytes, limits: ImageLimits, model_sizes: Sequence[int]) -> LoadedImage:
    try:
        px = read_dicom(data, limits)
    except ImageLoadError:
        raise
    except Exception as exc:  # malformed values deep in the header (LUTs, windows): only the type is logged
        logger.warning("DICOM not interpretable (%s)", type(exc).__name__)
        raise ImageLoadError(
            "This DICOM file holds malformed or unsupported image attributes and cannot be shown. "
            "Please export it again from the PACS or viewer."
        ) from None
    gray = Image.fromarray(px.display, mode="L")
    warnings = list(px.warnings)
    meta = dict(px.metadata)
    return _keep(gray, "DICOM", meta, warnings, model_sizes, window=px.window, histogram=px.histogram)


def to_model_input(image: Image.Image, size: int) -> ModelInput:
    """Upstream's preprocessing: RGB; shorter side -> `size` (LANCZOS); centre crop size x size; [-1, 1].

    New size (H', W') = (round(size / s * H), round(size / s * W)) with s = min(H, W) and Python's round;
    crop offsets int(round((H' - size) / 2)), int(round((W' - size) / 2)), as torchvision's TF.resize and
    TF.center_crop do on PIL images. Returns the tensor [1, 3, size, size] and the crop box in original
    pixel coordinates (floats, since the crop is made after resizing).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}.")
    # A gray image is resized before its channels are tripled: the same pixels (LANCZOS works per channel)
    # at a third of the memory, which matters for a 60-megapixel upload.
    rgb = image if image.mode == "L" else image.convert("RGB")
    w, h = rgb.size
    s = min(h, w)
    if s < 1 or max(h, w) / s > MAX_ASPECT:
        raise ImageLoadError(
            f"This image is too elongated ({w} x {h} pixels) for the model, which sees a square crop of a chest "
            "X-ray. Please upload the whole film."
        )
    new_h, new_w = round(size / s * h), round(size / s * w)
    resized = rgb.resize((new_w, new_h), Image.LANCZOS)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    crop = strip_metadata(resized.crop((left, top, left + size, top + size)).convert("RGB"))
    x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return ModelInput(tensor=(x * 2 - 1).unsqueeze(0).contiguous(), crop_box=box, image=crop)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """Decoded [1, 3, R, R] or [3, R, R] tensor in [-1, 1] -> "L" image: (x+1)/2, clamp, channel mean, round."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}.")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a [3, R, R] or [1, 3, R, R] tensor, got shape {tuple(x.shape)}.")
    unit = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1).mean(0)
    return Image.fromarray((unit * 255).round().to(torch.uint8).numpy(), mode="L")


def codes_to_image(codes: torch.Tensor, vqgan: torch.nn.Module) -> Image.Image:
    """grid*grid VQ indices ([N] or [1, N], row-major) -> the VQ-GAN's decoded "L" image."""
    device = next(vqgan.parameters()).device
    codes = codes.reshape(1, -1).to(device=device, dtype=torch.long)
    if codes.shape[1] != vqgan.grid * vqgan.grid:
        raise ValueError(f"expected {vqgan.grid * vqgan.grid} codes, got {codes.shape[1]}.")
    with torch.no_grad():
        return tensor_to_image(vqgan.decode_codes(codes))


def loaded_model_input(loaded: LoadedImage, size: int) -> ModelInput:
    """The model input of an upload at `size` px: the one made from the full-resolution decode when
    load_image was asked for it, else made from the display copy (the same pixels unless the upload was
    larger than DISPLAY_MAX_SIDE), its crop box scaled back to original pixels."""
    if size in loaded.model_inputs:
        return loaded.model_inputs[size]
    made = to_model_input(loaded.image, size)
    sx, sy = loaded.size[0] / loaded.image.width, loaded.size[1] / loaded.image.height
    left, top, right, bottom = made.crop_box
    return ModelInput(
        tensor=made.tensor, crop_box=(left * sx, top * sy, right * sx, bottom * sy), image=made.image
    )


def model_view(image: Image.Image | LoadedImage, vqgan: torch.nn.Module) -> ModelView:
    """Crop `image` as upstream does at vqgan.resolution, encode it to codes and decode them again."""
    if isinstance(image, LoadedImage):
        model_input = loaded_model_input(image, vqgan.resolution)
    else:
        model_input = to_model_input(image, vqgan.resolution)
    device = next(vqgan.parameters()).device
    with torch.no_grad():
        codes = vqgan.encode_codes(model_input.tensor.to(device))
    n = vqgan.grid * vqgan.grid
    if tuple(codes.shape) != (1, n):
        raise ValueError(f"VQ-GAN returned codes of shape {tuple(codes.shape)}, expected (1, {n}).")
    codes = codes[0].detach().to("cpu", torch.long)
    return ModelView(model_input=model_input, reconstruction=codes_to_image(codes, vqgan), codes=codes)

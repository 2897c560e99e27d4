"""DICOM -> 8-bit display pixels through pydicom's pixel pipeline, keeping only non-identifying metadata.

This module reads and checks the file: size limits (a deflated data set is measured before pydicom inflates
it), the header (image size, colour model), the first frame's decoding, and clear messages for damaged or
unsupported files. `dicom_header.py` says which tags are ever parsed and what may be reported about them
(closed vocabularies: names, IDs, dates and UIDs are skipped by the reader, and the file meta group, which
pydicom always reads, is never looked at, so they cannot leak into results, messages or logs);
`dicom_display.py` turns the decoded frame into display pixels (modality LUT, VOI, inversion, histogram).
pydicom's value validation (whose warnings quote the offending value) is switched off for reading, and
whatever else it warns while reading an upload is caught here (`_quiet`).
"""

from __future__ import annotations

import io
import logging
import warnings as pywarnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from llmcxr_app.imaging.dicom_display import to_display
from llmcxr_app.imaging.dicom_header import (
    PARSED_TAGS,
    PHOTOMETRICS,
    UNRECOGNISED,
    code_string,
    content_warnings,
    header_metadata,
    syntax_name,
)

logger = logging.getLogger(__name__)


class ImageLoadError(ValueError):
    """An upload that cannot be shown or used; the message is meant for the clinician who uploaded it."""


@dataclass(frozen=True)
class ImageLimits:
    """Sizes above which an upload is refused (decompression bombs, absurd headers)."""

    max_bytes: int = 256 * 2**20  # file size, and inflated size of a deflated DICOM
    max_pixels: int = 60_000_000  # width * height of the (first) frame; a large CXR is ~4300 x 3500 = 15 M
    max_side: int = 16_384  # longest side in pixels


DEFAULT_LIMITS = ImageLimits()


class PixelDataMismatchError(ImageLoadError):
    """The pixel data does not fit the image size the header declares."""


@contextmanager
def _quiet() -> Iterator[None]:
    """Read an upload without pydicom's value warnings: they quote header values (names, IDs, UIDs)."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class DicomPixels:
    """The display image of one DICOM frame and what the UI may show about it."""

    display: np.ndarray  # (H, W) uint8, 0 = black, 255 = white (display convention after any inversion)
    metadata: dict[str, str | int | float]  # non-identifying fields only
    warnings: tuple[str, ...]  # messages for the user (wrong modality, several frames, ...)
    window: tuple[float, float] | None  # (centre, width) in modality units when a linear window was used
    histogram: tuple[np.ndarray, np.ndarray]  # (counts[256] int64, edges[257] float64) of modality values


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (128-byte preamble then "DICM")."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def looks_like_bare_dicom(data: bytes) -> bool:
    """True for DICOM written without the preamble: it starts with a group 0x0002 or 0x0008 tag."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"


def _meta_transfer_syntax(data: bytes) -> tuple[str, int]:
    """(Transfer Syntax UID, offset where the data set starts) from a Part 10 file meta group."""
    pos, uid = 132, ""
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        element, vr = int.from_bytes(data[pos + 2 : pos + 4], "little"), data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            start, length = pos + 12, int.from_bytes(data[pos + 8 : pos + 12], "little")
        else:
            start, length = pos + 8, int.from_bytes(data[pos + 6 : pos + 8], "little")
        if element == 0x0010:
            uid = data[start : start + length].decode("ascii", "replace").strip("\x00 ")
        pos = start + length
    return uid, pos


def _check_deflate(data: bytes, limits: ImageLimits) -> None:
    """Refuse a deflated data set that would inflate beyond limits.max_bytes (pydicom inflates it whole)."""
    uid, start = _meta_transfer_syntax(data)
    if uid != DeflatedExplicitVRLittleEndian:
        return
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], limits.max_bytes + 1)
    except zlib.error:
        return  # damaged stream: pydicom's reader reports it below
    if len(inflated) > limits.max_bytes:
        raise ImageLoadError("This DICOM file expands to more data than the upload limit allows.")


def _read_dataset(data: bytes, limits: ImageLimits) -> tuple[Dataset, bool]:
    """(data set, True when a Part 10 file's transfer syntax was missing or empty and had to be guessed)."""
    part10 = is_dicom(data)
    try:
        if part10:
            _check_deflate(data, limits)
        ds = pydicom.dcmread(io.BytesIO(data), force=not part10, specific_tags=PARSED_TAGS)
    except ImageLoadError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged headers; only the type is kept
        logger.info("DICOM header unreadable (%s)", type(exc).__name__)
        raise ImageLoadError(
            "This DICOM file is damaged or incomplete (its header could not be read). "
            "Please export it again from the PACS or viewer."
        ) from None
    declared = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID") or "").strip("\x00 ")
    if not part10 or not declared:
        # Bare data set, or an empty/missing syntax: the reader guessed the encoding; decoders need it spelled out.
        implicit, little = ds.original_encoding
        if not little:
            raise ImageLoadError(
                "This DICOM file uses big-endian encoding without a header; it is not supported."
            )
        ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds, part10 and not declared


def _header_int(ds: Dataset, keyword: str, default: int | None, what: str) -> int:
    """An integer attribute (US or IS); ImageLoadError naming `what` when it is missing or not a number."""
    try:
        value = ds.get(keyword)
    except Exception:  # pydicom could not convert the raw value (text in an IS, a wrong length...)
        value = "unreadable"
    if value is None or value == "":
        if default is not None:
            return default
        raise ImageLoadError(
            f"This DICOM file does not describe its image size ({what} missing); it cannot be shown."
        )
    try:
        number = float(value[0] if isinstance(value, list | tuple | MultiValue) else value)
    except (TypeError, ValueError, IndexError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number):
        raise ImageLoadError(f"This DICOM file's {what} is not a whole number; the image cannot be read.")
    return int(number)


def _check_size(ds: Dataset, limits: ImageLimits) -> tuple[int, int, int]:
    try:
        rows = _header_int(ds, "Rows", None, "Rows/Columns")
        cols = _header_int(ds, "Columns", None, "Rows/Columns")
        frames = max(1, _header_int(ds, "NumberOfFrames", 1, "number of frames (NumberOfFrames)"))
        samples = _header_int(ds, "SamplesPerPixel", 1, "samples per pixel (SamplesPerPixel)")
    except ImageLoadError:
        raise
    except Exception:  # a value pydicom cannot even convert (damaged header)
        raise ImageLoadError(
            "This DICOM file does not describe its image size (Rows/Columns unreadable); it cannot be shown."
        ) from None
    if rows < 1 or cols < 1:
        raise ImageLoadError("This DICOM file declares an empty image (0 rows or columns).")
    if samples not in (1, 3):
        raise ImageLoadError(
            f"This DICOM file declares {samples} samples per pixel; only 1 or 3 are supported."
        )
    if max(rows, cols) > limits.max_side or rows * cols * samples > limits.max_pixels:
        raise ImageLoadError(
            f"This image is too large ({cols} x {rows} pixels, {samples} sample(s) each); the limit is "
            f"{limits.max_pixels / 1e6:.0f} megapixels and {limits.max_side} pixels per side."
        )
    return rows, cols, frames


def _decode_first_frame(ds: Dataset, frames: int, warnings: list[str], guessed: bool = False) -> np.ndarray:
    """The first frame, (rows, cols) or (rows, cols, 3); the pixel data is dropped from `ds` afterwards."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:
        name = syntax_name(tsyntax)
        logger.info("DICOM pixel decoding failed (%s, %s)", type(exc).__name__, name)
        if guessed:
            hint = "its transfer syntax is missing or empty, so how its image is encoded is unknown"
        elif isinstance(exc, NotImplementedError) or name.startswith("private"):
            hint = f"it is compressed as '{name}', which cannot be decoded by this installation"
        elif tsyntax.is_compressed:
            hint = f"its '{name}' compressed image data is damaged or incomplete"
        else:
            hint = "its image data is damaged or shorter than its header says (truncated file?)"
        raise ImageLoadError(
            f"The image in this DICOM file could not be read: {hint}. "
            "Please export it again (uncompressed if possible)."
        ) from None
    finally:
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)  # the encoded frame(s): as large as the image, no longer needed
    return _one_frame(arr, ds, warnings)


def _one_frame(arr: np.ndarray, ds: Dataset, warnings: list[str]) -> np.ndarray:
    """Check the decoded array against the declared size; data longer than declared reads as extra frames."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    expected = (rows, cols) if int(ds.get("SamplesPerPixel") or 1) == 1 else (rows, cols, 3)
    if arr.shape == expected:
        return arr
    if arr.ndim == len(expected) + 1 and arr.shape[1:] == expected and arr.shape[0] >= 1:
        warnings.append(
            "This DICOM file holds more image data than its header declares; only the first image was used. "
            "Check that it is the expected X-ray."
        )
        return arr[0]
    logger.info("DICOM pixel data shape mismatch (%d dimensions)", arr.ndim)
    raise PixelDataMismatchError(
        "The image data in this DICOM file does not match the image size its header declares; "
        "the file is damaged. Please export it again."
    )


def read_dicom(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> DicomPixels:
    """Decode the first frame of a DICOM file (bytes) to a display image; see the module docstring.

    pydicom's warnings are caught (`_quiet`): they may quote header values.
    """
    with _quiet():
        return _read_dicom(data, limits)


def _no_pixels_error(data: bytes) -> ImageLoadError:
    if b"\xe0\x7f\x10\x00" in data:  # the Pixel Data tag is there but the reader could not finish it
        return ImageLoadError(
            "The image in this DICOM file is incomplete: the file was cut short (truncated). "
            "Please export or download it again."
        )
    return ImageLoadError(
        "This DICOM file contains no image (no pixel data). It may be a report or another non-image "
        "object, or the file was cut short; please upload the X-ray image itself."
    )


def _read_dicom(data: bytes, limits: ImageLimits) -> DicomPixels:
    ds, guessed = _read_dataset(data, limits)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _no_pixels_error(data)
    rows, cols, frames = _check_size(ds, limits)
    photometric = code_string(ds, "PhotometricInterpretation", PHOTOMETRICS) or "MONOCHROME2"
    if photometric == UNRECOGNISED:
        raise ImageLoadError(
            "This DICOM file uses a pixel colour model (photometric interpretation) that is not supported."
        )
    meta = header_metadata(ds, rows, cols, frames, photometric)
    warnings = content_warnings(meta)
    if guessed:
        warnings.append(
            "This DICOM file's transfer syntax is missing or empty; its image was read as uncompressed data."
        )
    if frames > 1:
        warnings.append(f"This DICOM file holds {frames} frames; only the first one is shown and used.")
    arr = _decode_first_frame(ds, frames, warnings, guessed)
    display, (lo, hi), histogram, window = to_display(arr, ds, photometric, meta, warnings)
    meta.update(value_min=lo, value_max=hi)
    if lo == hi:
        warnings.append("The image is blank: every pixel has the same value.")
    syntax = meta["transfer_syntax"]
    logger.debug("DICOM decoded: %sx%s, %s, %s, %d frame(s)", cols, rows, photometric, syntax, frames)
    return DicomPixels(display, meta, tuple(warnings), window, histogram)

"""DICOM -> 8-bit display pixels through pydicom's pixel pipeline, keeping only non-identifying metadata.

Pipeline (PS3.3 C.11 / PS3.4 N.2): stored values -> modality LUT (LUT sequence or rescale slope/intercept)
-> VOI (first VOI LUT, else first window centre/width, else the full value range) -> MONOCHROME1 /
Presentation LUT INVERSE flipped to "bright = dense" -> uint8. Only tags needed for that (and a few coded
strings for the "is this a frontal chest radiograph?" check) are ever parsed: names, IDs, dates and UIDs are
skipped by the reader (the file meta group, which pydicom always reads, is never looked at), so they cannot
leak into results, messages or logs. pydicom's value validation (whose warnings quote the offending value) is
switched off for reading, and whatever else it warns while reading an upload is caught here (`_quiet`).

Memory: the modality LUT and VOI run on strips of STRIP_PIXELS pixels, so a 60-megapixel frame never has a
full-size float64 copy; the peak is the file, the decoded frame and the uint8 display image.
"""

from __future__ import annotations

import io
import logging
import warnings as pywarnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
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

# The only attributes ever parsed: pixel description (group 0028 as used by pydicom's decoders and LUTs),
# the pixel data itself and coded strings (VR CS) for the modality / view check.
_TAGS = [
    "Modality", "ViewPosition", "BodyPartExamined", "SamplesPerPixel", "PhotometricInterpretation",
    "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "WindowCenter", "WindowWidth", "VOILUTFunction", "RescaleIntercept",
    "RescaleSlope", "RescaleType", "ModalityLUTSequence", "VOILUTSequence", "PresentationLUTShape",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
]  # fmt: skip
# Coded strings are returned only when they belong to these closed vocabularies (DICOM defined terms), so a
# malformed file cannot smuggle free text (an MRN typed into BodyPartExamined) into results or messages.
_MODALITIES = set(
    "ANN AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES FID GM HC HD IO IOL "
    "IVOCT IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG "
    "RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN "
    "TEXTUREMAP TG US VA XA XAPROTOCOL XC CD DD DF DM DS EC FA FS LP MA MS OPR ST VF".split()
)
_VIEWS = {"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO", "LAT", "LATERAL"}
_BODY_PARTS = set(
    "ABDOMEN ABDOMENPELVIS ANKLE ARM BRAIN BREAST CHEST CHESTABDOMEN CHESTABDPELVIS CLAVICLE COCCYX CSPINE "
    "ELBOW EXTREMITY FACE FEMUR FINGER FOOT FOREARM HAND HEAD HEADNECK HEART HIP HUMERUS JAW KNEE LEG LSPINE "
    "LUNG NECK PELVIS RIB RIBS SACRUM SCAPULA SHOULDER SKULL SPINE SSPINE STERNUM THORAX THUMB TIBIA TOE "
    "TSPINE WHOLEBODY WRIST ZYGOMA".split()
)
_PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422",
                 "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_ICT", "YBR_RCT"}  # fmt: skip
UNRECOGNISED = "unrecognised"  # a coded value outside its vocabulary (never echoed)
_RADIOGRAPHY = {"CR", "DX", "RG"}
_MODALITY_NAMES = {
    "CT": "a CT scan", "MR": "an MRI scan", "US": "an ultrasound image", "NM": "a nuclear medicine image",
    "PT": "a PET image", "MG": "a mammogram", "XA": "an angiography image", "RF": "a fluoroscopy image",
    "IO": "an intra-oral dental radiograph", "PX": "a panoramic dental radiograph",
    "OT": "an 'other' (secondary capture) image", "XC": "a photograph", "SM": "a microscopy slide",
}  # fmt: skip
_LATERAL_VIEWS = {"LL": "lateral", "RL": "lateral", "LAT": "lateral", "LATERAL": "lateral",
                  "LLO": "oblique", "RLO": "oblique"}  # fmt: skip
_CHEST_PARTS = {"CHEST", "THORAX", "LUNG", "RIB", "RIBS", "HEART", "CHESTABDOMEN", "CHESTABDPELVIS"}
HISTOGRAM_BINS = 256  # bins of the modality-value histogram handed to the UI
STRIP_PIXELS = 1 << 20  # pixels per strip of the float64 LUT/VOI pipeline (8 MB per temporary)
MAX_WINDOW = 1e12  # |centre| or width beyond this is not a display window (1e308 would overflow the plot)


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


def _code_string(ds: Dataset, keyword: str, vocabulary: set[str]) -> str | None:
    """A coded string (VR CS) from the raw bytes, if in `vocabulary`; UNRECOGNISED if present but not; None
    if absent. Raw, because converting it through pydicom validates it and logs the offending value."""
    elem = ds.get_item(keyword)
    value = None if elem is None else elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = str(value or "").split("\\")[0].strip(" \x00").upper()  # multi-valued: the first value
    if not text:
        return None
    return text if text in vocabulary else UNRECOGNISED


def _first(value) -> float:
    """First value of a multi-valued DS/IS element (several windows: the first is the default one); NaN if
    it is not a number."""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


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
        ds = pydicom.dcmread(io.BytesIO(data), force=not part10, specific_tags=_TAGS)
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


def _syntax_name(tsyntax: pydicom.uid.UID) -> str:
    """Name of a standard transfer syntax; private ones stay unnamed (their UID is not echoed)."""
    if not str(tsyntax).strip("\x00 "):
        return "missing or empty transfer syntax"
    return UID_dictionary[tsyntax][0] if tsyntax in UID_dictionary else "private transfer syntax"


def _decode_first_frame(ds: Dataset, frames: int, warnings: list[str], guessed: bool = False) -> np.ndarray:
    """The first frame, (rows, cols) or (rows, cols, 3); the pixel data is dropped from `ds` afterwards."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:
        name = _syntax_name(tsyntax)
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


def _window_unit(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1] instead of the output bit range."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR":  # the standard's half-pixel convention; LINEAR_EXACT uses c and w as given
        center, width = center - 0.5, width - 1.0
    if width <= 0:
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


Unit = Callable[[np.ndarray], np.ndarray]  # modality values (a strip) -> display levels in [0, 1]


def _voi_lut(ds: Dataset, meta: dict) -> Unit:
    lut_items = ds.VOILUTSequence
    nr, first_map = int(lut_items[0].LUTDescriptor[0]) or 65536, int(lut_items[0].LUTDescriptor[1])
    # The LUT's own output range (descriptors often claim 16 bits for 12-bit data).
    table = apply_voi(np.arange(first_map, first_map + nr, dtype=np.int64), ds, 0).astype(np.float64)
    lo, hi = table.min(), table.max()
    meta["voi"] = f"VOI LUT (1 of {len(lut_items)})"

    def unit(values: np.ndarray) -> np.ndarray:
        out = apply_voi(np.rint(values).astype(np.int64), ds, 0).astype(np.float64)
        return (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)

    return unit


def _voi(ds: Dataset, lo: float, hi: float, meta: dict, warnings: list[str]) -> tuple[Unit, tuple | None]:
    """The VOI transform for modality values in lo..hi and the (centre, width) used, or None for a VOI LUT."""
    lut_items = ds.get("VOILUTSequence") or []
    if lut_items and "LUTDescriptor" in lut_items[0] and "LUTData" in lut_items[0]:
        return _voi_lut(ds, meta), None
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            warnings.append("The file's VOI LUT function is unknown; a linear window was used.")
            function = "LINEAR"
        usable = np.isfinite(center) and np.isfinite(width) and abs(center) <= MAX_WINDOW
        if usable and (1 if function == "LINEAR" else 1e-6) <= width <= MAX_WINDOW:
            n = ds["WindowCenter"].VM
            meta.update(voi=f"window (1 of {n})", window_center=center, window_width=width)
            meta["voi_function"] = function
            return (lambda v: _window_unit(v, center, width, function)), (center, width)
        warnings.append("The file's display window is invalid; the full value range is shown instead.")
    meta["voi"] = "full range (min..max)"
    # A window spanning min..max in LINEAR_EXACT form (what a viewer's "auto" window does).
    center, width = (lo + hi) / 2, max(hi - lo, 1e-6)
    return (lambda v: _window_unit(v, center, width, "LINEAR_EXACT")), (center, width)


def _strips(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1, STRIP_PIXELS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _histogram_range(lo: float, hi: float) -> tuple[float, float]:
    if float(lo).is_integer() and float(hi).is_integer():
        # Integer values: bins a whole number of values wide, edges between integers (no comb of empty bins)
        width = max(1, -(-int(hi - lo + 1) // HISTOGRAM_BINS))  # ceil
        return lo - 0.5, lo - 0.5 + width * HISTOGRAM_BINS
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def _to_display(arr: np.ndarray, values_of: Unit, unit_of: Callable[[float, float], Unit], invert: bool):
    """Two passes over row strips: the value range, then display uint8 and the histogram of values.

    Returns (display (H, W) uint8, (lo, hi) of the values, (counts[256] int64, edges[257] float64)).
    """
    lo, hi = np.inf, -np.inf
    for rows in _strips(arr.shape[0], arr.shape[1]):
        values = values_of(arr[rows])
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    unit = unit_of(lo, hi)
    display = np.empty(arr.shape[:2], dtype=np.uint8)
    counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    edges = None
    for rows in _strips(arr.shape[0], arr.shape[1]):
        values = values_of(arr[rows])
        level = unit(values)
        if invert:
            level = 1.0 - level  # stored "high = bright air" -> display "high = dense bone"
        display[rows] = np.rint(np.clip(level, 0.0, 1.0) * 255.0)
        part, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=_histogram_range(lo, hi))
        counts += part
    return display, (lo, hi), (counts, edges)


def _content_warnings(meta: dict) -> list[str]:
    """Warnings when the header says this is not a frontal chest radiograph (the model's only input)."""
    out = []
    modality = meta.get("modality")
    if modality == UNRECOGNISED:
        out.append(
            "This file's modality is not recognised as an X-ray radiograph. LLM-CXR was trained only on frontal "
            "chest radiographs; check that this is one."
        )
    elif modality and modality not in _RADIOGRAPHY:
        what = _MODALITY_NAMES.get(modality, f"a '{modality}' image")
        out.append(
            f"This file is {what} (DICOM modality {modality}), not a chest X-ray. LLM-CXR was trained only on "
            "frontal chest radiographs, so its answers about this image are not meaningful."
        )
    view = meta.get("view_position")
    if view in _LATERAL_VIEWS:
        out.append(
            f"This is a {_LATERAL_VIEWS[view]} view (ViewPosition {view}). LLM-CXR was trained on frontal "
            "(PA/AP) chest X-rays; answers about other views are unreliable."
        )
    part = meta.get("body_part")
    if part and part != UNRECOGNISED and part not in _CHEST_PARTS:
        out.append(
            f"The file says the body part is '{part}', not the chest; LLM-CXR only knows chest X-rays."
        )
    return out


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


def _header_metadata(ds: Dataset, rows: int, cols: int, frames: int, photometric: str) -> dict:
    meta: dict[str, str | int | float] = {"width": cols, "height": rows, "frames": frames}
    coded = {
        "modality": _code_string(ds, "Modality", _MODALITIES),
        "view_position": _code_string(ds, "ViewPosition", _VIEWS),
        "body_part": _code_string(ds, "BodyPartExamined", _BODY_PARTS),
    }
    meta.update({key: value for key, value in coded.items() if value is not None})
    meta["photometric"] = photometric
    for key, keyword in (("bits_allocated", "BitsAllocated"), ("bits_stored", "BitsStored"),
                         ("pixel_representation", "PixelRepresentation")):  # fmt: skip
        try:
            if ds.get(keyword) is not None:
                meta[key] = int(ds.get(keyword))
        except (TypeError, ValueError):
            pass  # informative only; the decoder reports values it cannot use
    meta["transfer_syntax"] = _syntax_name(ds.file_meta.TransferSyntaxUID)
    return meta


def _colour_values(ds: Dataset, photometric: str) -> Unit:
    """Colour strip -> luma in 0..255 (RGB after pydicom's YBR conversion or palette lookup)."""
    bits = int(ds.get("BitsStored") or 8)

    def values_of(strip: np.ndarray) -> np.ndarray:
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(strip, ds)
            full = 65535.0 if rgb.dtype == np.uint16 and rgb.max() > 255 else 255.0
        else:
            rgb, full = strip, float(2**bits - 1)
        rgb = rgb.astype(np.float64) / full
        unit = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114 if rgb.ndim == 3 else rgb
        return unit * 255.0

    return values_of


def _modality(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values (a strip) -> modality values, float64."""
    return apply_modality_lut(stored, ds).astype(np.float64)


def _read_dicom(data: bytes, limits: ImageLimits) -> DicomPixels:
    ds, guessed = _read_dataset(data, limits)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _no_pixels_error(data)
    rows, cols, frames = _check_size(ds, limits)
    photometric = _code_string(ds, "PhotometricInterpretation", _PHOTOMETRICS) or "MONOCHROME2"
    if photometric == UNRECOGNISED:
        raise ImageLoadError(
            "This DICOM file uses a pixel colour model (photometric interpretation) that is not supported."
        )
    meta = _header_metadata(ds, rows, cols, frames, photometric)
    warnings = _content_warnings(meta)
    if guessed:
        warnings.append(
            "This DICOM file's transfer syntax is missing or empty; its image was read as uncompressed data."
        )
    if frames > 1:
        warnings.append(f"This DICOM file holds {frames} frames; only the first one is shown and used.")
    arr = _decode_first_frame(ds, frames, warnings, guessed)
    window = None
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            meta.update(rescale_slope=float(ds.RescaleSlope), rescale_intercept=float(ds.RescaleIntercept))
        inverse = str(ds.get("PresentationLUTShape") or "").strip().upper() == "INVERSE"
        chosen: list = []

        def unit_of(lo: float, hi: float) -> Unit:
            unit, win = _voi(ds, lo, hi, meta, warnings)
            chosen.append(win)
            return unit

        invert = photometric == "MONOCHROME1" or inverse
        display, (lo, hi), histogram = _to_display(arr, lambda s: _modality(s, ds), unit_of, invert=invert)
        window = chosen[0]
    else:
        display, (lo, hi), histogram = _to_display(
            arr, _colour_values(ds, photometric), lambda lo, hi: lambda v: v / 255.0, invert=False
        )
        meta["voi"] = "none (colour image)"
        warnings.append("This DICOM image is in colour; it was converted to grayscale.")
    meta.update(value_min=lo, value_max=hi)
    if lo == hi:
        warnings.append("The image is blank: every pixel has the same value.")
    syntax = meta["transfer_syntax"]
    logger.debug("DICOM decoded: %sx%s, %s, %s, %d frame(s)", cols, rows, photometric, syntax, frames)
    return DicomPixels(display, meta, tuple(warnings), window, histogram)

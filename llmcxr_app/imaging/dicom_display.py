"""DICOM pixel values -> 8-bit display image: modality LUT, VOI (LUT or window), inversion, histogram.

Pipeline (PS3.3 C.11 / PS3.4 N.2): stored values -> modality LUT (LUT sequence or rescale slope/intercept)
-> VOI (first VOI LUT, else first window centre/width, else the full value range) -> MONOCHROME1 /
Presentation LUT INVERSE flipped to "bright = dense" -> uint8. Colour images (RGB after pydicom's YBR
conversion, or a palette lookup) become luma. `dicom.py` reads and checks the file and calls `to_display`.

Memory: the modality LUT and VOI run on strips of STRIP_PIXELS pixels, so a 60-megapixel frame never has a
full-size float64 copy; the peak is the file, the decoded frame and the uint8 display image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

HISTOGRAM_BINS = 256  # bins of the modality-value histogram handed to the UI
STRIP_PIXELS = 1 << 20  # pixels per strip of the float64 LUT/VOI pipeline (8 MB per temporary)
MAX_WINDOW = 1e12  # |centre| or width beyond this is not a display window (1e308 would overflow the plot)

Unit = Callable[[np.ndarray], np.ndarray]  # modality values (a strip) -> display levels in [0, 1]


def _first(value) -> float:
    """First value of a multi-valued DS/IS element (several windows: the first is the default one); NaN if
    it is not a number."""
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _window_unit(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1] instead of the output bit range."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR":  # the standard's half-pixel convention; LINEAR_EXACT uses c and w as given
        center, width = center - 0.5, width - 1.0
    if width <= 0:
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


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


def to_display(
    arr: np.ndarray, ds: Dataset, photometric: str, meta: dict, warnings: list[str]
) -> tuple[np.ndarray, tuple[float, float], tuple[np.ndarray, np.ndarray], tuple[float, float] | None]:
    """One decoded frame -> (display (H, W) uint8, (lo, hi) of the values, histogram, window or None).

    `arr` is (rows, cols) stored values, or (rows, cols, 3) for colour; the histogram is (counts[256] int64,
    edges[257] float64) of the modality values (luma 0..255 for colour); the window is (centre, width) in
    modality units when a linear window was used. Adds what it chose to `meta` and appends to `warnings`.
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        display, (lo, hi), histogram = _to_display(
            arr, _colour_values(ds, photometric), lambda lo, hi: lambda v: v / 255.0, invert=False
        )
        meta["voi"] = "none (colour image)"
        warnings.append("This DICOM image is in colour; it was converted to grayscale.")
        return display, (lo, hi), histogram, None
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
    return display, (lo, hi), histogram, chosen[0]

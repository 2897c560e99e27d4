"""Builds the test corpus of DICOM (and a few raw image) files in memory with pydicom, Pillow and numpy.

Every DICOM carries distinctive fake identifiers (`SECRETS`) so tests can prove none of them leaks. The
known pattern is asymmetric on both axes and non-square, so flips, transpositions and polarity errors show:
dark background, a bright square top-left, a mid-grey block bottom-right.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLosslessSV1

H, W = 48, 64
BRIGHT = (slice(4, 16), slice(4, 20))  # rows, cols of the bright square (top-left)
MID = (slice(32, 44), slice(44, 60))  # the mid-grey block (bottom-right)
BACKGROUND = (slice(20, 28), slice(24, 40))  # a patch of pure background in the middle

# Fake identity written into every file; none of these strings may appear in any output.
UID_ROOT = "1.2.826.0.1.3680043.8.498.777"
IDENTITY = {
    "PatientName": "DOE^JANE",
    "PatientID": "MRN12345",
    "PatientBirthDate": "19700101",
    "StudyDate": "20240229",
    "SeriesDate": "20240229",
    "StudyTime": "101112",
    "AccessionNumber": "ACC998877",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "WHO^DOCTOR",
    "StudyInstanceUID": UID_ROOT + ".1",
    "SeriesInstanceUID": UID_ROOT + ".2",
    "SOPInstanceUID": UID_ROOT + ".3",
}
SECRETS = (
    "DOE",
    "JANE",
    "MRN12345",
    "19700101",
    "20240229",
    "101112",
    "ACC998877",
    "Example",
    "DOCTOR",
    UID_ROOT,
)


def pattern() -> np.ndarray:
    """(H, W) float64 display levels in [0, 1]: 0 background, 1 bright square, 0.5 mid block."""
    p = np.zeros((H, W))
    p[BRIGHT] = 1.0
    p[MID] = 0.5
    return p


def to_stored(levels: np.ndarray, lo: int, hi: int, dtype) -> np.ndarray:
    """Display levels in [0, 1] -> stored integers spanning lo..hi."""
    return np.rint(lo + levels * (hi - lo)).astype(dtype)


def make_dataset(
    stored: np.ndarray,
    bits_stored: int,
    *,
    photometric: str = "MONOCHROME2",
    modality: str | None = "DX",
    view: str | None = "PA",
    body_part: str | None = "CHEST",
    **attributes,
) -> Dataset:
    """A DICOM DX-like data set (explicit VR little endian) holding `stored` ((H, W) or (frames, H, W))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray for presentation
    ds.file_meta.MediaStorageSOPInstanceUID = IDENTITY["SOPInstanceUID"]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    for key, value in IDENTITY.items():
        setattr(ds, key, value)
    if modality is not None:
        ds.Modality = modality
    if view is not None:
        ds.ViewPosition = view
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.set_pixel_data(
        stored, photometric_interpretation=photometric, bits_stored=bits_stored, generate_instance_uid=False
    )
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def voi_lut_item(table: np.ndarray, first_map: int, bits: int) -> Dataset:
    """One VOI LUT Sequence item mapping stored value first_map + i -> table[i]."""
    item = Dataset()
    item.add_new(0x00283002, "US", [len(table) % 65536, first_map, bits])  # LUT Descriptor
    item.add_new(0x00283006, "US", [int(v) for v in table])  # LUT Data
    item.LUTExplanation = "test LUT"
    return item


def with_voi_lut(ds: Dataset, items: list[Dataset]) -> Dataset:
    ds.VOILUTSequence = Sequence(items)
    return ds


def to_bytes(ds: Dataset, *, part10: bool = True, implicit: bool = False) -> bytes:
    """Serialise: a Part 10 file, or a bare data set (no preamble, no file meta) as old systems wrote."""
    buf = io.BytesIO()
    if part10:
        ds.save_as(buf, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(buf, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


def jpeg_baseline_dataset(levels: np.ndarray, quality: int = 95) -> Dataset:
    """An 8-bit JPEG baseline DICOM: Pillow encodes the frame, pydicom encapsulates it."""
    from PIL import Image

    stored = to_stored(levels, 0, 255, np.uint8)
    ds = make_dataset(stored, 8)
    jpeg = io.BytesIO()
    Image.fromarray(stored, mode="L").save(jpeg, format="JPEG", quality=quality)
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height 8-bit gray pixels (a decompression-bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_lossless_sv1(stored: np.ndarray, precision: int) -> bytes:
    """Minimal JPEG Lossless (Process 14, first-order prediction) encoder for one gray frame.

    No encoder for this transfer syntax installs from PyPI, yet it is the most common compressed format in
    CR/DX archives; this ~T.81 H.1 encoder lets the tests exercise the pylibjpeg-libjpeg decoder.
    """
    x = stored.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)  # first sample of the scan
    pred[0, 1:] = x[0, :-1]  # first row: left neighbour
    pred[1:, 0] = x[:-1, 0]  # first column: the sample above
    pred[1:, 1:] = x[1:, :-1]  # predictor 1 (Ra) elsewhere
    diffs = ((x - pred + 32768) % 65536) - 32768  # differences are modulo 2^16
    # Huffman table: categories 0..16 all get 5-bit codes 0..16 (never the all-ones code).
    bits = "".join(_lossless_bits(int(d)) for d in diffs.ravel())
    bits += "1" * (-len(bits) % 8)
    data = bytearray()
    for i in range(0, len(bits), 8):
        byte = int(bits[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    h, w = x.shape
    sof3 = struct.pack(">BHHB", precision, h, w, 1) + bytes([1, 0x11, 0])
    dht = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # 1 component, table 0; Ss = predictor 1, Se = 0, Ah/Al = 0
    return (
        b"\xff\xd8"
        + _marker(0xC3, sof3)
        + _marker(0xC4, dht)
        + _marker(0xDA, sos)
        + bytes(data)
        + b"\xff\xd9"
    )


def _marker(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + struct.pack(">H", len(payload) + 2) + payload


def _lossless_bits(diff: int) -> str:
    category = 0 if diff == 0 else int(abs(diff)).bit_length()
    code = format(category, "05b")
    if category in (0, 16):  # category 16 (diff 32768) carries no extra bits
        return code
    extra = diff if diff > 0 else diff + (1 << category) - 1
    return code + format(extra, f"0{category}b")


def jpeg_lossless_dataset(levels: np.ndarray, bits_stored: int = 12, **attributes) -> Dataset:
    """A DICOM whose pixel data is `levels` encoded with `jpeg_lossless_sv1`."""
    stored = to_stored(levels, 0, 2**bits_stored - 1, np.uint8 if bits_stored <= 8 else np.uint16)
    ds = make_dataset(stored, bits_stored, **attributes)
    ds.PixelData = encapsulate([jpeg_lossless_sv1(stored, bits_stored)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    return ds


def with_empty_transfer_syntax(data: bytes) -> bytes:
    """A Part 10 file whose Transfer Syntax UID (0002,0010) is present with an empty value (length 0), its
    File Meta group length corrected; pydicom refuses to write such a file itself."""
    tag = b"\x02\x00\x10\x00UI"
    at = data.index(tag, 132)
    length = int.from_bytes(data[at + 6 : at + 8], "little")
    out = bytearray(data[:at] + tag + b"\x00\x00" + data[at + 8 + length :])
    group_length = int.from_bytes(out[140:144], "little")  # (0002,0000) UL right after the preamble and tag
    out[140:144] = (group_length - length).to_bytes(4, "little")
    return bytes(out)


def with_text_number_of_frames(ds: Dataset, text: bytes = b"abc ") -> Dataset:
    """Number of Frames (IS) holding text, written raw (pydicom would refuse to convert it)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", len(text), text, 0, False, True)
    return ds


def raw_element(ds: Dataset, tag: int, vr: str, text: str) -> Dataset:
    """Set `tag` to `text` as raw bytes (even length), bypassing pydicom's conversion: how a bad IS/DS/UI value
    arrives in a real file."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    value = text.encode("latin-1")
    value += b" " if len(value) % 2 else b""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    return ds

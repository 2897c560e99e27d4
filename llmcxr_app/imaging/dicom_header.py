"""Which DICOM attributes are ever parsed, and what may be said about them: closed vocabularies only.

Only the tags in PARSED_TAGS are read (`dicom.py` hands them to pydicom's reader): the pixel description and
a few coded strings (VR CS) for the "is this a frontal chest radiograph?" check. Names, IDs, dates and UIDs
are never parsed, and a coded string is reported only when it belongs to its DICOM defined terms, so nothing
identifying can reach results, messages or logs.
"""

from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

# The only attributes ever parsed: pixel description (group 0028 as used by pydicom's decoders and LUTs),
# the pixel data itself and coded strings (VR CS) for the modality / view check.
PARSED_TAGS = [
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "PresentationLUTShape",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
]
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
PHOTOMETRICS = {
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_420",
    "YBR_PARTIAL_422",
    "YBR_ICT",
    "YBR_RCT",
}
UNRECOGNISED = "unrecognised"  # a coded value outside its vocabulary (never echoed)
_RADIOGRAPHY = {"CR", "DX", "RG"}
_MODALITY_NAMES = {
    "CT": "a CT scan",
    "MR": "an MRI scan",
    "US": "an ultrasound image",
    "NM": "a nuclear medicine image",
    "PT": "a PET image",
    "MG": "a mammogram",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "IO": "an intra-oral dental radiograph",
    "PX": "a panoramic dental radiograph",
    "OT": "an 'other' (secondary capture) image",
    "XC": "a photograph",
    "SM": "a microscopy slide",
}
_LATERAL_VIEWS = {
    "LL": "lateral",
    "RL": "lateral",
    "LAT": "lateral",
    "LATERAL": "lateral",
    "LLO": "oblique",
    "RLO": "oblique",
}
_CHEST_PARTS = {"CHEST", "THORAX", "LUNG", "RIB", "RIBS", "HEART", "CHESTABDOMEN", "CHESTABDPELVIS"}


def code_string(ds: Dataset, keyword: str, vocabulary: set[str]) -> str | None:
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


def syntax_name(tsyntax: pydicom.uid.UID) -> str:
    """Name of a standard transfer syntax; private ones stay unnamed (their UID is not echoed)."""
    if not str(tsyntax).strip("\x00 "):
        return "missing or empty transfer syntax"
    return UID_dictionary[tsyntax][0] if tsyntax in UID_dictionary else "private transfer syntax"


def header_metadata(ds: Dataset, rows: int, cols: int, frames: int, photometric: str) -> dict:
    """The non-identifying metadata the UI may show: size (pixels), frames, coded strings within their
    vocabularies, bit depth and the transfer syntax's standard name."""
    meta: dict[str, str | int | float] = {"width": cols, "height": rows, "frames": frames}
    coded = {
        "modality": code_string(ds, "Modality", _MODALITIES),
        "view_position": code_string(ds, "ViewPosition", _VIEWS),
        "body_part": code_string(ds, "BodyPartExamined", _BODY_PARTS),
    }
    meta.update({key: value for key, value in coded.items() if value is not None})
    meta["photometric"] = photometric
    bit_depth = (
        ("bits_allocated", "BitsAllocated"),
        ("bits_stored", "BitsStored"),
        ("pixel_representation", "PixelRepresentation"),
    )
    for key, keyword in bit_depth:
        try:
            if ds.get(keyword) is not None:
                meta[key] = int(ds.get(keyword))
        except (TypeError, ValueError):
            pass  # informative only; the decoder reports values it cannot use
    meta["transfer_syntax"] = syntax_name(ds.file_meta.TransferSyntaxUID)
    return meta


def content_warnings(meta: dict) -> list[str]:
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

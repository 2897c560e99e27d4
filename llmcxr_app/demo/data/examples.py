"""Write the UI's example X-rays: held-out phantoms (never seen in training) as PNG, and one as DICOM.

python -m llmcxr_app.demo.data.examples --out assets/examples
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from llmcxr_app.demo.data.phantoms import Findings, make_phantom
from llmcxr_app.demo.data.samples import EVAL_SEED_START

# name -> predicate on the findings; the first held-out seed that matches is used.
WANTED: dict[str, Callable[[Findings], bool]] = {
    "normal": lambda f: f.is_normal(),
    "cardiomegaly": lambda f: f.cardiomegaly and sum(f.label_vector().values()) == 1,
    "effusion_right_large": lambda f: (
        f.effusion == "right" and f.effusion_size == "large" and sum(f.label_vector().values()) == 1
    ),
    "pneumothorax_left": lambda f: f.pneumothorax == "left" and sum(f.label_vector().values()) == 1,
    "consolidation": lambda f: f.consolidation != "none" and sum(f.label_vector().values()) == 1,
    "edema_ett": lambda f: f.edema and f.ett and sum(f.label_vector().values()) == 2,
    "pacemaker_effusion_left": lambda f: (
        f.pacemaker and f.effusion == "left" and sum(f.label_vector().values()) == 2
    ),
}
DICOM_EXAMPLE = "effusion_right_large"  # also written as a DICOM file


def find_seeds(start: int = EVAL_SEED_START + 500_000, limit: int = 20_000) -> dict[str, int]:
    """First held-out seed for each wanted example (phantom findings only; images are drawn later)."""
    found: dict[str, int] = {}
    for seed in range(start, start + limit):
        f = make_phantom(seed, size=16).findings
        for name, want in WANTED.items():
            if name not in found and want(f):
                found[name] = seed
        if len(found) == len(WANTED):
            return found
    raise RuntimeError(f"no seed found for {sorted(set(WANTED) - set(found))}")


def write_dicom(image: Image.Image, path: Path) -> None:
    """A CR-style DICOM of a phantom: 12-bit MONOCHROME2 with a window, placeholder identity, no dates."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    pixels = (np.asarray(image, dtype=np.uint16) * 16).astype(np.uint16)  # 8 -> 12 bits
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "PHANTOM^SYNTHETIC"
    ds.PatientID = "PHANTOM"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "CR", "PA", "CHEST"
    ds.SeriesDescription = "Synthetic phantom (LLM-CXR Studio example), not a patient"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("assets/examples"))
    p.add_argument("--size", type=int, default=512, help="pixels (the app resizes to the model's input)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, seed in find_seeds().items():
        ph = make_phantom(seed, size=a.size)
        ph.image.save(a.out / f"{name}.png", optimize=True)
        if name == DICOM_EXAMPLE:
            write_dicom(ph.image, a.out / f"{name}.dcm")
        index[name] = {"seed": seed, "report": ph.report, "labels": ph.findings.label_vector()}
    (a.out / "examples.json").write_text(json.dumps(index, indent=2))
    print(f"wrote {len(index)} examples to {a.out}")


if __name__ == "__main__":
    main()

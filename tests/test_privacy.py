"""No header value of an upload reaches a log, a warning, an error message or a served file (redact.py).

Identifiers are planted in every header field pydicom may complain about, headers are damaged at random
(seeded), and the files go through a real server (ui_harness + gradio_client). The captured log, the warnings
and stderr, and every file the server wrote (Gradio's cache and the session folders) are then searched.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dicom_corpus import make_dataset, pattern, raw_element, to_bytes, to_stored
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo
from ui_harness import files, serve, tiny_studio

from llmcxr_app import redact
from llmcxr_app.ui import sweeper

# Planted identifiers: distinctive, so a hit can only mean a leak.
NAME, PID, DOCTOR, STUDY = "ZEBRAFOX^QUILLON", "PIDX77341", "DRWOMBAT^KESTREL", "STUDYDESCR-ORCHID"
BIRTH, INSTITUTION, ACCESSION = "19310417", "HOSPITAL-MARMALADE", "ACCN558811"
UID = "1.2.826.0.1.3680043.8.498.424242"
PLANTED = ("ZEBRAFOX", "QUILLON", PID, "DRWOMBAT", "KESTREL", STUDY, BIRTH, INSTITUTION, ACCESSION, UID)


def planted_dataset() -> bytes:
    """A 12-bit DX with identifiers everywhere, several of them invalid for their VR (pydicom quotes those)."""
    ds = make_dataset(to_stored(pattern(), 0, 4095, np.uint16), 12, WindowCenter=2048, WindowWidth=4096)
    ds.PatientName, ds.PatientID, ds.ReferringPhysicianName = NAME, PID, DOCTOR
    ds.StudyDescription, ds.PatientBirthDate, ds.InstitutionName = STUDY, BIRTH, INSTITUTION
    ds.AccessionNumber, ds.OtherPatientIDs, ds.PatientComments = ACCESSION, PID, f"{NAME} {PID} {BIRTH}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = f"{UID}.1", f"{UID}.2", f"{UID}.3"
    ds.file_meta.MediaStorageSOPInstanceUID = f"{UID}.3.{PID}"  # invalid UI, in the always-read file meta
    for tag, vr, text in (
        (0x00200013, "IS", PID),  # InstanceNumber: text in an IS
        (0x00180050, "DS", STUDY),  # SliceThickness: text in a DS
        (0x00200011, "IS", BIRTH + "X"),  # SeriesNumber
        (0x00100030, "DA", f"{BIRTH}{PID}"),  # PatientBirthDate too long
        (0x00081030, "LO", (STUDY + " ") * 8),  # StudyDescription longer than LO allows
        (0x00185101, "CS", NAME),  # ViewPosition (parsed by the app): a name in a coded string
        (0x00180015, "CS", PID),  # BodyPartExamined (parsed by the app)
        (0x00181030, "LO", f"{NAME}\\{DOCTOR}"),  # ProtocolName
    ):
        raw_element(ds, tag, vr, text)
    return to_bytes(ds)


def damaged(data: bytes, rng: np.random.Generator) -> bytes:
    """Random bytes (and lengths, and VRs) of the header overwritten; the pixel values left alone."""
    end = data.index(b"\xe0\x7f\x10\x00") + 12
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 10))):
        at = int(rng.integers(128, end))
        run = int(rng.integers(1, 5))
        out[at : at + run] = rng.integers(0, 256, run, dtype=np.uint8).tobytes()
    return bytes(out)


def planted_png() -> bytes:
    """A PNG carrying the identifiers in text chunks, EXIF and an ICC profile's description."""
    info = PngInfo()
    info.add_text("PatientName", NAME)
    info.add_text("PatientID", PID)
    info.add_itxt("Comment", f"{DOCTOR} {BIRTH}")
    exif = Image.Exif()
    exif[0x010E] = f"{NAME} {PID}"  # ImageDescription
    exif[0x013B] = DOCTOR  # Artist
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    image = Image.fromarray(to_stored(pattern(), 0, 255, np.uint8), mode="L").resize((96, 72))
    image.save(buf, format="PNG", pnginfo=info, exif=exif.tobytes(), icc_profile=icc)
    data = buf.getvalue()
    assert PID.encode() in data and b"eXIf" in data and b"iCCP" in data
    return data


class Collect(logging.Handler):
    """Every record, formatted as a handler would write it (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def app(tiny_location, tmp_path_factory):
    """A real server whose files all land in a private folder: Gradio's cache and the session folders."""
    root = tmp_path_factory.mktemp("privacy")
    collect, top = Collect(), logging.getLogger()
    old_level = top.level
    top.addHandler(collect)
    top.setLevel(logging.DEBUG)
    examples = root / "examples"
    examples.mkdir()
    Image.fromarray(to_stored(pattern(), 0, 255, np.uint8), mode="L").save(examples / "example_film.png")
    studio = tiny_studio(tiny_location)
    try:
        with serve(studio, examples) as url:
            # Every file the server writes lands in the sweeper's root (Gradio's cache and the sessions),
            # which other servers of this test process may share: their files are left out of the search.
            files_root = Path(os.environ[sweeper.GRADIO_ENV])
            yield url, FilesWritten(files_root, set(files_root.rglob("*"))), collect, studio
    finally:
        top.removeHandler(collect)
        top.setLevel(old_level)


def send(client: Client, path: Path, text: str = "Is there an effusion?"):
    message = {"text": text, "files": [handle_file(str(path))]}
    return client.submit(message, "Auto", 1.0, 0.92, 16, "1", 1, api_name="/chat")


@dataclass(frozen=True)
class FilesWritten:
    """The server's file root and what was in it before this module's server started."""

    root: Path  # the sweeper's root folder
    before: set[Path]  # files of other servers in this process (the root is shared), not searched


def written_files(files: FilesWritten) -> list[Path]:
    return [p for p in files.root.rglob("*") if p.is_file() and p not in files.before]


def leaks(text: str | bytes) -> list[str]:
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [s for s in PLANTED if s.encode() in blob]


def test_planted_and_damaged_dicoms_leak_nothing(app, tmp_path, capfd):
    url, root, collect, _ = app
    client = Client(url, verbose=False, download_files=False)
    rng = np.random.default_rng(424242)
    good = planted_dataset()
    uploads = [good] + [damaged(good, rng) for _ in range(12)]
    outcomes, messages = {"answered": 0, "refused": 0}, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, data in enumerate(uploads):
            path = tmp_path / f"{NAME.replace('^', '_')}_{PID}_{i}.dcm"  # the file name identifies too
            path.write_bytes(data)
            try:
                chat = send(client, path).result()[0]
                outcomes["answered"] += 1
                messages.append(repr(chat))
            except AppError as exc:
                outcomes["refused"] += 1
                messages.append(str(exc))
    assert outcomes["answered"] >= 2 and outcomes["refused"] >= 1, outcomes  # both paths were exercised
    out, err = capfd.readouterr()
    shown = [warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught]
    raw = [str(w.message) for w in caught]
    places = {
        "log": "\n".join(collect.lines),
        "stderr": out + err,
        "warnings": "\n".join(shown),
        "warning messages": "\n".join(raw),
        "replies": "\n".join(messages),
    }
    for where, text in places.items():
        assert not leaks(text), f"{where}: {leaks(text)}"
    written = written_files(root)
    assert written, "the server wrote no file: the search below would prove nothing"
    names = [f"{NAME.replace('^', '_')}_{PID}_{i}.dcm".encode() for i in range(len(uploads))]
    for file in written:
        data = file.read_bytes()
        if "-answer-" in file.name:  # the uploader's own answer download names the file it read, nothing more
            for name in names:
                data = data.replace(name, b"")
        assert not leaks(str(file)) and not leaks(data), file
        assert data[128:132] != b"DICM", f"an upload was kept: {file}"


def _metadata_chunks(data: bytes) -> list[bytes]:
    """Metadata chunk types in a PNG or WebP file (text, EXIF, ICC, XMP)."""
    found = []
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(data):
            length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
            if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
                found.append(kind)
            pos += 12 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        pos = 12
        while pos + 8 <= len(data):
            kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
            if kind in (b"EXIF", b"ICCP", b"XMP "):
                found.append(kind)
            pos += 8 + length + (length & 1)
    else:
        raise AssertionError(f"unexpected served image format: {data[:12]!r}")
    return found


def _served_images(chat: list[dict], outputs: list) -> list[Path]:
    paths = [Path(p) for p in files(chat) if Path(p).suffix.lower() in (".png", ".webp", ".jpg", ".jpeg")]
    for out in outputs:
        for value in out[2:9]:
            value = value.get("value") if isinstance(value, dict) and "value" in value else value
            if isinstance(value, dict) and value.get("path"):
                paths.append(Path(value["path"]))
    return paths


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_every_served_image_is_pixels_only(app, tmp_path, kind):
    url, root, _, _ = app
    client = Client(url, verbose=False, download_files=False)
    upload = tmp_path / f"{PID}.{kind}"
    upload.write_bytes(planted_png() if kind == "png" else planted_dataset())
    job = send(client, upload)
    outputs = list(job)
    chat = job.outputs()[-1][0]
    served = _served_images(chat, outputs)
    # The chat's display copy, the overview, model input and reconstruction (and the DICOM's histogram).
    assert len(served) >= (5 if kind == "dicom" else 4), served
    for path in served:
        data = path.read_bytes()
        assert _metadata_chunks(data) == [], path
        assert not leaks(data), path
        with Image.open(path) as im:
            assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(im.info), (path, im.info)
    gradio_files = written_files(root)
    assert not [p for p in gradio_files if p.name == upload.name], "the raw upload was not deleted"


# --- the redaction itself -----------------------------------------------------------------------------------


def test_redaction_of_library_logs_warnings_and_tracebacks():
    redact.install()
    redact.install()  # idempotent: one factory, one warning formatter
    collect, top = Collect(), logging.getLogger()
    top.addHandler(collect)
    try:
        logging.getLogger("pydicom").warning(f"Invalid value for VR UI: '{UID}.{PID}'. Please see <url>")
        logging.getLogger("PIL.TiffImagePlugin").warning("tag: %s - value: %s", "Artist", NAME)
        logging.getLogger("pydicom").warning("x" * 10_000 + f"b'{NAME}'")
        try:
            raise ValueError(f"Expected ... received b'{NAME}\\x00{PID}' with length 415000")
        except ValueError:
            logging.getLogger("llmcxr_app.ui.chat").exception("generation failed")
    finally:
        top.removeHandler(collect)
    text = "\n".join(collect.lines)
    assert not leaks(text), leaks(text)
    assert "Invalid value for VR UI: '<redacted>'" in text and "tag: %s - value: %s" in text
    assert max(len(line) for line in collect.lines) < 2 * redact.MAX_CHARS + 2000  # no 415 KB lines
    assert "Traceback (most recent call last)" in text and "ValueError: Expected ... received" in text
    assert "test_privacy.py" in text  # the stack is kept for diagnosis
    shown = warnings.formatwarning(f"Invalid value for VR PN: '{NAME}'", UserWarning, "x.py", 1)
    assert not leaks(shown) and "<redacted>" in shown


def test_strip_metadata_keeps_pixels_only():
    with Image.open(io.BytesIO(planted_png())) as im:
        im.load()
        assert im.info.get("PatientID") == PID
        clean = redact.strip_metadata(im)
    assert clean.info == {} and not clean.getexif()
    assert np.array_equal(np.asarray(clean), np.asarray(Image.open(io.BytesIO(planted_png()))))
    buf = io.BytesIO()
    clean.save(buf, format="PNG")
    assert _metadata_chunks(buf.getvalue()) == [] and not leaks(buf.getvalue())


def test_user_mistakes_log_one_line_and_real_failures_a_redacted_traceback(app, tmp_path, capfd):
    url, _, collect, studio = app
    client = Client(url, verbose=False, download_files=False)
    pdf = tmp_path / f"{PID}.pdf"
    pdf.write_bytes(b"%PDF-1.4 " + NAME.encode())
    collect.lines.clear()
    capfd.readouterr()
    with pytest.raises(AppError, match="PDF document"):
        send(client, pdf).result()
    refused = [line for line in collect.lines if "llmcxr_app" in line]
    assert refused == ["INFO llmcxr_app.ui.uploads: request refused: ImageLoadError"]
    assert "Traceback" not in "\n".join(collect.lines) + "".join(capfd.readouterr())

    def broken(*args, **kwargs):
        raise RuntimeError(f"decoder state {{'PatientID': '{PID}'}} b'{NAME}'")

    collect.lines.clear()
    patch = pytest.MonkeyPatch()
    patch.setattr(studio, "ask", broken)
    try:
        with pytest.raises(AppError, match="Something went wrong"):
            client.submit(
                {"text": "What is a pneumothorax?", "files": []},
                "Auto",
                1.0,
                0.92,
                16,
                "1",
                1,
                api_name="/chat",
            ).result()
    finally:
        patch.undo()
    log = "\n".join(collect.lines)
    assert "ERROR llmcxr_app.ui.chat: request setup failed" in log
    assert "Traceback (most recent call last)" in log and "RuntimeError: decoder state" in log  # diagnosable
    assert "test_privacy.py" in log and not leaks(log + "".join(capfd.readouterr()))


def test_an_example_survives_being_sent_twice(app):
    url, _, _, _ = app
    client = Client(url, verbose=False, download_files=False)
    (dataset,) = [c for c in client.config["components"] if c.get("type") == "dataset"]
    cached = next(
        f["path"]
        for row in dataset["props"]["samples"]
        for v in row
        if isinstance(v, dict)
        for f in v["files"]
    )
    assert Path(cached).is_file()  # Gradio's copy of the example, in the upload folder like an upload
    message = {"text": "", "files": [{"path": cached, "meta": {"_type": "gradio.FileData"}}]}
    for _ in range(2):  # what clicking the example twice sends
        client.submit(message, "Auto", 1.0, 0.92, 16, "1", 1, api_name="/chat").result()
    assert Path(cached).is_file()


def test_every_test_the_privacy_doc_cites_exists():
    """docs/PRIVACY.md backs each sentence with a test: every test it names must exist in tests/."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "PRIVACY.md").read_text(encoding="utf-8")
    cited = {name for name in re.findall(r"\b(test_[a-z0-9_]+)\b", doc) if not name.endswith("_io")}
    cited -= {"test_privacy", "test_sweeper", "test_ui", "test_browser", "test_imaging"}  # file names
    defined = {
        m
        for f in Path(__file__).parent.glob("test_*.py")
        for m in re.findall(r"def (test_\w+)", f.read_text())
    }
    assert len(cited) >= 15 and cited <= defined, sorted(cited - defined)

"""What an answer's downloads record about its request: the mode it ran in, the user's question or findings,
and the name and SHA-256 of the X-ray file it read (imaging.exports.answer_json's "request").

Written only to the user's own downloads, never to the log: a DICOM's file name is often a UID or a patient's
name."""

from __future__ import annotations

from llmcxr_app import protocol
from llmcxr_app.imaging.images import DEFAULT_LIMITS, ImageLoadError
from llmcxr_app.ui.routing import Route
from llmcxr_app.ui.sessions import CurrentXray


def read_upload(path: str) -> bytes:
    """The uploaded file's bytes (at most one byte over the upload limit: load_image refuses those).

    Read once, so the SHA-256 in the downloads is of exactly the bytes that were decoded."""
    try:  # the file name may itself identify a patient: it is never echoed
        with open(path, "rb") as fh:
            return fh.read(DEFAULT_LIMITS.max_bytes + 1)
    except OSError:
        raise ImageLoadError("The file could not be opened (missing or unreadable).") from None


def request_record(current: CurrentXray | None, plan: Route, label: str) -> dict:
    """{"mode", then "question" (Ask) or "findings" (Draw), then "input_file" and "input_sha256" when the
    answer read the current X-ray (Report, Ask about it)}; ``label`` is routing.mode_label's line."""
    record: dict = {"mode": label.removeprefix("Mode: ")}
    if plan.task == protocol.TASK_DRAW:
        record["findings"] = plan.text
    elif plan.task in (protocol.TASK_VQA, protocol.TASK_INSTRUCT):
        record["question"] = plan.text
    if current is not None and plan.task in (protocol.TASK_REPORT, protocol.TASK_VQA):
        record["input_file"] = current.name or None
        record["input_sha256"] = current.sha256 or None
    return record

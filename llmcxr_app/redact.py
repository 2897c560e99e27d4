"""Keep header values of uploads out of logs, warnings and served images (privacy by construction).

pydicom and Pillow quote the values they complain about ("Invalid value for VR UI: '...'"), and a damaged
header can make pydicom quote hundreds of kilobytes of it (names, IDs, birth dates). `install()` (called once
at app and CLI start; idempotent) routes every log record and every formatted warning through `redact_text`:

- records of the image libraries (loggers "pydicom", "PIL" and "py.warnings", where captured warnings go)
  keep only their message template: arguments are data, the template is code;
- every record's and warning's text loses quoted values (`'...'`, `"..."`, `b'...'`) and is cut to
  MAX_CHARS;
- tracebacks of real failures keep their stack (file, line, code) but each exception message is redacted
  the same way, so a diagnosable traceback never carries file content.

`strip_metadata` returns a pixel-only copy of an image: PNG text chunks, EXIF, ICC profiles, DPI and any
other `info` entry are dropped, so nothing of an upload's header can ride along when Gradio saves it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
import warnings
from types import TracebackType

from PIL import Image

__all__ = ["MAX_CHARS", "REDACTED", "install", "redact_text", "strip_metadata"]

MAX_CHARS = 400  # longest log or warning text kept; a damaged header once produced a 415 KB line
REDACTED = "<redacted>"
IMAGE_LOGGERS = (
    "pydicom",
    "PIL",
    "py.warnings",
)  # libraries that read upload headers (and captured warnings)
# A quoted run: optional bytes prefix, then '...' or "..." with escapes; an unterminated quote runs to the end.
_QUOTED = re.compile(r"""b?'(?:[^'\\]|\\.)*(?:'|$)|b?"(?:[^"\\]|\\.)*(?:"|$)""", re.DOTALL)

_lock = threading.Lock()
_installed = False


def redact_text(text: str, limit: int = MAX_CHARS) -> str:
    """`text` with every quoted value replaced by '<redacted>' and cut to `limit` characters."""
    text = _QUOTED.sub(f"'{REDACTED}'", str(text))
    if len(text) > limit:
        text = f"{text[:limit]}... [{len(text) - limit} characters cut]"
    return text


def _redacted_traceback(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    """A traceback like logging's, each exception message (the chain included) passed through redact_text."""
    exc = exc_info[1]
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        stack = "".join(traceback.format_tb(exc.__traceback__))
        parts.append(
            f"Traceback (most recent call last):\n{stack}{type(exc).__name__}: {redact_text(str(exc))}"
        )
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n\nThe above exception was the cause of, or occurred while handling:\n\n".join(reversed(parts))


def _redact_record(record: logging.LogRecord) -> None:
    if record.name.split(".")[0] in IMAGE_LOGGERS:
        message = str(record.msg)  # the template only: arguments would be header values
    else:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template, never the arguments
            message = str(record.msg)
    record.msg, record.args = redact_text(message), ()
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = _redacted_traceback(record.exc_info)  # logging formats exc_text when it is set
    if record.stack_info:
        record.stack_info = None  # stack dumps may hold local values in future Python versions


def _record_factory(previous):
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory.llmcxr_redacting = True  # lets install() recognise its own factory
    return factory


def _format_warning(previous):
    def formatwarning(message, category, filename, lineno, line=None) -> str:
        return redact_text(
            previous(redact_text(str(message)), category, filename, lineno, line), MAX_CHARS * 2
        )

    formatwarning.llmcxr_redacting = True
    return formatwarning


def install() -> None:
    """Route all log records and formatted warnings through the redaction (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        if not getattr(logging.getLogRecordFactory(), "llmcxr_redacting", False):
            logging.setLogRecordFactory(_record_factory(logging.getLogRecordFactory()))
        if not getattr(warnings.formatwarning, "llmcxr_redacting", False):
            # Both Python's default warning printer and logging.captureWarnings format through this hook.
            warnings.formatwarning = _format_warning(warnings.formatwarning)
        _installed = True


def strip_metadata(image: Image.Image) -> Image.Image:
    """A copy holding only the pixels (mode and size kept): no text chunks, EXIF, ICC profile, DPI or
    palette transparency entries. Gradio copies `image.info` text into the PNGs it serves; this empties it."""
    clean = image.copy()
    clean.info = {}
    if hasattr(clean, "_exif"):
        clean._exif = None  # Pillow caches parsed EXIF here and getexif() would bring it back
    return clean

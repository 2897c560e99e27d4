"""Raw uploads: deleted once decoded (or refused), so no URL serves a file that may hold patient data."""

from __future__ import annotations

import logging
from pathlib import Path

from gradio.utils import get_upload_folder

from llmcxr_app.studio.errors import StudioInputError

logger = logging.getLogger(__name__)


def discard_upload(path: str | None, keep: set[Path]) -> None:
    """Delete the file Gradio stored for an upload (it may hold names and IDs in its header).

    Only files inside Gradio's upload folder are removed (never an example, nor a file the server was given),
    with the per-upload folder Gradio made for it when that is left empty. `keep`: resolved paths to spare.
    """
    if not path:
        return
    cache = Path(get_upload_folder()).resolve()
    try:
        file = Path(path).resolve()
        if cache not in file.parents or file in keep:
            return
        file.unlink(missing_ok=True)
        if file.parent != cache and not any(file.parent.iterdir()):
            file.parent.rmdir()
    except OSError as exc:  # already swept, or a race with another request: nothing to keep anyway
        logger.info("upload not deleted (%s)", type(exc).__name__)


def refused(exc: Exception, text: str, path: str | None, keep: set[Path]) -> dict:
    """The message box's value after a user's mistake, which logs one line: no traceback (Gradio's own print
    is off too) and no message (it may quote the user's text). The upload goes back into the box only when
    the image itself was fine; otherwise it is deleted."""
    logger.info("request refused: %s", type(exc).__name__)
    back = path if isinstance(exc, StudioInputError) and path else None
    discard_upload(None if back else path, keep)
    return {"text": text, "files": [back] if back else []}

"""Launches the chat app exactly as app.py does (ui.build + ui.launch_kwargs) on a free local port, for the
gradio_client and browser tests, with the tiny random model of conftest.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from dicom_corpus import make_dataset, pattern, to_bytes, to_stored

from llmcxr_app.config import ModelLocation, RuntimeConfig, ServerConfig, Settings
from llmcxr_app.demo.data.phantoms import make_phantom
from llmcxr_app.engine.steps import decode_step
from llmcxr_app.studio.facade import Studio
from llmcxr_app.ui import app as ui


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StepGate:
    """Holds a test model mid-answer: hold(n) lets n more decode steps run, then every step waits until
    release(). A test sees a half-streamed answer in the browser whatever the machine's load, then the rest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._left: int | None = None  # decode steps still allowed while holding; None: not holding

    def hold(self, steps: int) -> None:
        with self._cond:
            self._left = steps

    def release(self) -> None:
        with self._cond:
            self._left = None
            self._cond.notify_all()

    def wait(self) -> None:
        """Called before each decode step (in the server's worker thread)."""
        with self._cond:
            if self._left is not None and self._left > 0:
                self._left -= 1
                return
            # 60 s: a test that forgets release() still ends (its answer then finishes).
            self._cond.wait_for(lambda: self._left is None, timeout=60)


def tiny_studio(location: ModelLocation, step_delay_s: float = 0.0, gate: StepGate | None = None) -> Studio:
    """The tiny random model; step_delay_s slows each decode step (as a big model would be) so a Stop can be
    pressed mid-generation deterministically; `gate` can hold the answer mid-way (StepGate)."""
    studio = Studio.from_settings(
        Settings(model=location, runtime=RuntimeConfig(fast_path=False, warmup=False))
    )
    if step_delay_s <= 0 and gate is None:
        return studio

    def slow_step(*args):
        if gate is not None:
            gate.wait()
        time.sleep(step_delay_s)
        return decode_step(*args)

    return Studio.from_parts(studio.llm, studio.vqgan, studio.location, step=slow_step)


def write_examples(folder: Path) -> dict[str, Path]:
    """Two phantom PNGs and a DICOM (with fake identifiers from dicom_corpus) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for seed, name in ((3, "phantom_a"), (7, "phantom_b")):
        out[name] = folder / f"{name}.png"
        make_phantom(seed, size=96).image.save(out[name])
    out["dicom"] = folder / "chest.dcm"
    out["dicom"].write_bytes(to_bytes(make_dataset(to_stored(pattern(), 0, 4095, "uint16"), 12)))
    return out


@contextmanager
def serve(studio: Studio | Mapping[str, Studio], examples_dir: Path, **server: object) -> Iterator[str]:
    """Build and launch the app in this process (one model, or several by name); yield its URL; close it."""
    config = replace(ServerConfig(host="127.0.0.1", port=free_port()), **server)
    demo = ui.build(studio, config, examples_dir=examples_dir)
    kwargs = ui.launch_kwargs(config)
    kwargs["allowed_paths"] = [str(examples_dir)]
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        demo.close()


def texts(chat: list[dict]) -> list[tuple[str, str]]:
    """(role, text) of every text part of a chat as the API returns it."""
    out = []
    for message in chat:
        content = message["content"]
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append((message["role"], part["text"]))
            elif isinstance(part, str):
                out.append((message["role"], part))
    return out


def files(chat: list[dict]) -> list[str]:
    """Server paths of every file in a chat (image messages and download lists)."""
    out = []
    for message in chat:
        content = message["content"]
        for part in content if isinstance(content, list) else [content]:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "file":  # a downloaded file (a local path) or the server's FileData
                out.append(part["file"] if isinstance(part["file"], str) else part["file"]["path"])
            elif part.get("type") == "component":
                value = part.get("value")
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if isinstance(v, str):
                        out.append(v)
                    elif isinstance(v, dict) and "path" in v:
                        out.append(v["path"])
                    elif isinstance(v, dict) and "image" in v:  # gallery items
                        out.append(v["image"]["path"])
    return out

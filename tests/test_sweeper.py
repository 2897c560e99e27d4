"""The sweeper (sweeper.py): files older than the TTL are deleted by sweeps every TTL/4, a conversation whose
files expired keeps working, and shutdown by SIGTERM or SIGINT of a real `python app.py` leaves no file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from ui_harness import files, free_port, serve, texts, tiny_studio, write_examples

from llmcxr_app import protocol
from llmcxr_app.config import REPO_ROOT
from llmcxr_app.ui.sweeper import EMPTY_DIR_GRACE_S, FileRoot, Lease


def all_files(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(folder) for f in names]


def lease(root: FileRoot, ttl_s: float, hits: list | None = None, keep=tuple) -> Lease:
    out = Lease(root, ttl_s, keep, (hits.append if hits is not None else lambda cutoff: None))
    root.attach(out)
    return out


def test_a_sweep_deletes_every_file_older_than_the_ttl(tmp_path):
    root = FileRoot(tmp_path)
    example = root.path / "e4f5" / "example.png"
    kept = [str(example)]
    mine = lease(root, 3600, keep=lambda: kept)  # its thread sweeps too: assert on what is left, not counts
    now = time.time()
    session = mine.new_session_dir()
    old = [
        session / "answer-001.json",
        root.path / "0a1b" / "upload.dcm",
        root.path / "deep" / "er" / "x.png",
    ]
    young = [session / "answer-002.json", root.path / "c2d3" / "image.webp"]
    for path in old + young + [example]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in young:
        os.utime(path, (now - 3500, now - 3500))
    for path in old + [example]:
        os.utime(path, (now - 3601, now - 3601))
    root.sweep(now)
    assert sorted(all_files(root.path)) == sorted(young + [example])  # the kept example and young files stay
    kept.clear()
    root.sweep(now)  # once no server keeps it, the example goes too
    root.sweep(time.time() + EMPTY_DIR_GRACE_S + 0.1)
    assert not (root.path / "deep").exists() and not (root.path / "e4f5").exists()  # emptied folders go
    assert sorted(all_files(root.path)) == sorted(young)
    mine.release()  # the last server leaving removes the root
    assert not root.path.exists()


def test_sweeps_run_every_quarter_ttl_and_use_the_shortest_ttl(tmp_path):
    root = FileRoot(tmp_path)
    hits: list[float] = []
    long = lease(root, 3600)
    short = lease(root, 0.4, hits)
    path = root.path / "f00d" / "upload.png"
    path.parent.mkdir()
    path.write_bytes(b"x")
    time.sleep(1.6)
    assert not path.exists()  # 0.4 s TTL + sweeps every 0.1 s: gone well within 1.6 s
    gaps = sorted(b - a for a, b in zip(hits, hits[1:], strict=False))
    # Every TTL/4 (0.1 s): the median gap says the period, robust to one late wake-up on a loaded machine
    # (a sweep at the TTL itself, 0.4 s, would give a median of 0.4).
    assert len(hits) >= 6 and gaps[len(gaps) // 2] < 0.1 + 0.1, gaps
    short.release()
    assert root.ttl_s == 3600 and root.path.exists()
    long.release()
    assert not root.path.exists()


# --- a conversation through gradio_client with a 3-second TTL ------------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    return write_examples(tmp_path_factory.mktemp("sweeper-examples"))


def send(client, text="", file=None, mode="Auto", max_new_tokens=16):
    message = {"text": text, "files": [handle_file(str(file))] if file else []}
    return client.submit(message, mode, 1.0, 0.92, max_new_tokens, "1", 1, api_name="/chat")


def test_a_conversation_whose_files_expired_keeps_working(tiny_location, examples):
    ttl = 3
    with serve(tiny_studio(tiny_location), examples["phantom_a"].parent, delete_cache_s=ttl) as url:
        client = Client(url, verbose=False, download_files=False)
        first = send(client, "Is there an effusion?", file=examples["phantom_b"]).result()[0]
        paths = files(first)
        assert len(paths) >= 3 and all(Path(p).exists() for p in paths)  # the image and two downloads
        time.sleep(ttl + ttl / 4 + 1.0)  # a sweep after the TTL
        assert not any(Path(p).exists() for p in paths), "files older than the TTL survived a sweep"
        job = send(client, "Is the heart enlarged?")
        chat = job.result()[0]
        shown = [t for _, t in texts(chat)]
        assert any("image expired" in t for t in shown) and any("downloads expired" in t for t in shown)
        assert [t for r, t in texts(chat) if r == "user"][-1] == "Is the heart enlarged?"
        answer = [p for p in files(chat) if p.endswith(".json")]
        assert len(answer) == 1 and Path(answer[0]).exists()  # the new answer's downloads are served
        # The expired X-ray was forgotten with its files: the follow-up is a plain instruction, the panel empty.
        assert json.loads(Path(answer[0]).read_text())["provenance"]["task"] == protocol.TASK_INSTRUCT
        empty_note = job.outputs()[0][2]
        assert empty_note.get("visible") is True
        assert httpx.get(f"{url}gradio_api/file={paths[0]}").status_code in (403, 404)  # no URL serves it
    assert not Path(answer[0]).exists()  # closing the server deleted its sessions' files


# --- shutdown of a real server process ----------------------------------------------------------------------


def _start_app(tiny_location, files_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCXR_", "GRADIO_"))}
    cmd = [
        sys.executable,
        "app.py",
        "--llm",
        tiny_location.llm,
        "--vqgan-config",
        tiny_location.vqgan_config,
        "--vqgan-ckpt",
        tiny_location.vqgan_ckpt,
        "--no-fast-path",
        "--threads",
        "1",
        "--port",
        str(port),
        "--files-dir",
        str(files_dir),
        "--ttl",
        "600",
    ]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"app.py did not start: {log.read_text()[-3000:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_server_removes_every_file(tiny_location, examples, tmp_path, signum):
    files_dir, port, log = tmp_path / "files", free_port(), tmp_path / "app.log"
    proc = _start_app(tiny_location, files_dir, port, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_serving(proc, url, log)
        client = Client(url, verbose=False, download_files=False)
        send(client, "", file=examples["dicom"]).result()  # a report: display copy, downloads, panel images
        (root,) = files_dir.iterdir()
        assert len(all_files(root)) >= 6
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(files_dir.iterdir()) == [], all_files(files_dir)

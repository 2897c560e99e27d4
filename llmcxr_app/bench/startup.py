"""Start-up benchmark: how long `python app.py` takes until the page answers, and until its first answer.

    python -m llmcxr_app.bench startup                    # 3 runs of app.py with its default weights
    python -m llmcxr_app.bench startup --runs 1 -- --llm DIR --vqgan-config YAML --vqgan-ckpt FILE

Each run starts `python app.py --port P` (plus the arguments after `--`) as a fresh process, polls the page
every 0.1 s until it answers HTTP 200 (page_s), then sends one question to /chat through gradio_client and
waits for the whole answer (first_answer_s, counted from the start). The seconds at which the app's own
start-up log lines appeared are kept too (loaded_s, ready_s, warm_s). The process is stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from llmcxr_app.config import REPO_ROOT

QUESTION = "Is the heart enlarged?"
# The app's start-up log lines, in the order they are written (app.py, studio/facade.py, ui/app.py).
MARKS = {
    "loading_s": "Loading the model",
    "loaded_s": "Weights loaded in",
    "warm_start_s": "Warm-up started",
    "ready_s": "Ready: the app answers on",
    "warm_s": "Warm-up done in",
}


@dataclass
class StartupRun:
    """One start of app.py; every time in seconds since the process was started."""

    page_s: float | None = None  # the page answered HTTP 200
    first_answer_s: float | None = None  # the first /chat answer was complete
    marks: dict[str, float] = field(default_factory=dict)  # MARKS key -> when that log line appeared
    log: list[str] = field(default_factory=list)  # the process's output lines, in order
    answer: str = ""  # the first answer's text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(proc: subprocess.Popen, t0: float, run: StartupRun) -> None:
    """Collect the process's output lines and when each start-up mark appeared."""
    for line in proc.stdout:
        line = line.rstrip("\n")
        run.log.append(line)
        for key, text in MARKS.items():
            if text in line and key not in run.marks:
                run.marks[key] = time.perf_counter() - t0


def _wait_page(url: str, proc: subprocess.Popen, t0: float, timeout_s: float) -> float:
    """Seconds from t0 until GET url answers 200; raises RuntimeError when the app exits or times out."""
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode} before the page answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the page did not answer within {timeout_s:.0f} s")


def _ask(url: str) -> str:
    """The text of the first answer to QUESTION (no X-ray) through the app's /chat API."""
    from gradio_client import Client  # a dependency of gradio; only this benchmark needs it

    client = Client(url, verbose=False, download_files=False)
    message = {"text": QUESTION, "files": []}
    chat = client.submit(message, "Auto", 1.0, 0.92, 32, "1", 1, api_name="/chat").result()[0]
    texts = []
    for message in (m for m in chat if m["role"] == "assistant"):
        content = message["content"]  # a string, or a list of parts ({"type": "text", "text": ...})
        for part in content if isinstance(content, list) else [content]:
            text = part.get("text") if isinstance(part, dict) else part
            if isinstance(text, str) and text:
                texts.append(text)
    return texts[0] if texts else ""


def start_once(app_args: list[str], timeout_s: float = 180.0, ask: bool = True) -> StartupRun:
    """Start app.py once on a free port, measure, stop it (SIGTERM), return the run."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO_ROOT / "app.py"), "--port", str(port), *app_args]
    run = StartupRun()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    reader = threading.Thread(target=_read, args=(proc, t0, run), daemon=True)
    reader.start()
    try:
        run.page_s = _wait_page(url, proc, t0, timeout_s)
        if ask:
            run.answer = _ask(url)
            run.first_answer_s = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    return run


def _fmt(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return " ".join(f"{v:5.1f}" for v in known) + (f"  (median {median(known):.1f})" if known else "")


def table(runs: list[StartupRun]) -> str:
    rows = [("page answers (HTTP 200)", [r.page_s for r in runs])]
    rows += [("first /chat answer complete", [r.first_answer_s for r in runs])]
    rows += [(f"log: {text}", [r.marks.get(key) for r in runs]) for key, text in MARKS.items()]
    return "\n".join(f"{name:<36} {_fmt(values)}" for name, values in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llmcxr_app.bench startup", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--runs", type=int, default=3, help="starts of app.py to measure")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the page per run")
    p.add_argument("--json", default=None, help="write the runs (with their logs) here")
    p.add_argument("app_args", nargs="*", help="arguments for app.py, after --")
    a = p.parse_args(argv)
    runs = []
    for i in range(a.runs):
        print(f"[bench startup] run {i + 1} of {a.runs} ...", file=sys.stderr, flush=True)
        runs.append(start_once(a.app_args, a.timeout))
    print(f"seconds since `python app.py` started, {a.runs} runs; 1-minute load {os.getloadavg()[0]:.1f}")
    print(table(runs))
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return 0

"""Start the app (app.py, the demo weights unless flags say otherwise) on a free local port, ask it through
gradio_client for one report of an example X-ray and one drawing, and write what happened as JSON.

    python scripts/gpu_app_check.py --device cuda --json app.json [-- APP_FLAGS...]

Step "app" of scripts/gpu_check.sh. Exit status 0 when both answers came back from the requested device (as the
answers' JSON downloads record it), else 1. Times are wall seconds seen by the client; GPU memory is what
nvidia-smi reports for the server process while it still holds its model (absent without nvidia-smi).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "examples" / "effusion_right_large.png"
FINDINGS = "Draw a chest X-ray: Large left pleural effusion. Heart size is normal."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, limit_s: float) -> float:
    """Seconds until the server accepts connections; RuntimeError if it exits or `limit_s` passes first."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode} before serving")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not serve within {limit_s:.0f} s")


def server_files(chat: list[dict]) -> list[str]:
    """Server paths of the files a chat holds (images, downloads); the client runs on the server's machine."""
    out = []
    for message in chat:
        content = message["content"]
        for part in content if isinstance(content, list) else [content]:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "file":
                out.append(part["file"] if isinstance(part["file"], str) else part["file"]["path"])
            elif part.get("type") == "component":  # download lists, galleries
                value = part.get("value")
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str):
                        out.append(v)
                    elif isinstance(v, dict) and "path" in v:
                        out.append(v["path"])
                    elif isinstance(v, dict) and "image" in v:
                        out.append(v["image"]["path"])
    return out


def ask(client: Any, text: str, file: Path | None, mode: str, max_new_tokens: int) -> dict:
    """One /chat request; its seconds, the assistant's last text and the provenance of its JSON download."""
    from gradio_client import handle_file

    message = {"text": text, "files": [handle_file(str(file))] if file else []}
    t0 = time.perf_counter()
    chat = client.submit(message, mode, 1.0, 0.92, max_new_tokens, "1", 1, api_name="/chat").result()[0]
    seconds = time.perf_counter() - t0
    paths = server_files(chat)
    records = [json.loads(Path(p).read_text()) for p in paths if p.endswith(".json")]
    provenance = records[-1]["provenance"] if records else {}
    turn = chat[max(i for i, m in enumerate(chat) if m["role"] == "user") :]  # this request's messages
    texts = [
        part["text"]
        for m in turn
        if m["role"] == "assistant"
        for part in (m["content"] if isinstance(m["content"], list) else [m["content"]])
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return {
        "seconds": round(seconds, 3),
        "task": provenance.get("task"),
        "device": provenance.get("device"),
        "quantization": provenance.get("quantization"),
        "images": sum(p.lower().endswith(".png") for p in paths),
        "answer": (texts[0] if texts else "")[:300],  # of an example image: no patient data
    }


def gpu_memory_mib(pid: int) -> int | None:
    """MiB nvidia-smi counts for process `pid`; None without nvidia-smi or when it lists no such process."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [ln.split(",") for ln in out.splitlines() if "," in ln]
    return next((int(mib) for p, mib in rows if p.strip() == str(pid) and mib.strip().isdigit()), None)


def _cut(*_: object) -> None:
    raise TimeoutError("cut short by SIGTERM (the check's time box)")


def run(device: str, start_limit_s: float, app_flags: list[str]) -> dict:
    """Serve, ask twice, stop; the report (raises nothing: a failure is recorded in "error")."""
    port = free_port()
    cmd = [
        sys.executable,
        str(ROOT / "app.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        device,
    ]
    report: dict[str, Any] = {
        "command": " ".join([Path(cmd[0]).name, *cmd[1:], *app_flags]),
        "device": device,
    }
    # Same process group: `timeout` in gpu_check.sh ends the server with this script.
    proc = subprocess.Popen([*cmd, *app_flags], cwd=ROOT)
    signal.signal(signal.SIGTERM, _cut)  # a timeout's SIGTERM: record how far it got, stop the server
    try:
        report["start_s"] = round(wait_ready(proc, port, start_limit_s), 3)
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        report["describe"] = ask(client, "Describe this X-ray.", EXAMPLE, "Auto", 128)
        report["draw"] = ask(client, FINDINGS, None, "Draw", 128)
        report["gpu_memory_mib"] = gpu_memory_mib(proc.pid)
    except Exception as exc:  # recorded, so the check's summary says what broke
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop(proc)
    want = "cuda" if device.startswith("cuda") else device
    answers = [report.get(k) or {} for k in ("describe", "draw")]
    report["ok"] = (
        "error" not in report
        and all(str(a.get("device", "")).startswith(want) for a in answers)
        and [a.get("task") for a in answers] == ["report", "draw"]
    )
    return report


def stop(proc: subprocess.Popen) -> None:
    """SIGINT (the app's own clean shutdown), then SIGKILL after 8 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="the app's --device (cuda, cuda:N, cpu)")
    p.add_argument("--start-limit", type=float, default=120.0, help="seconds the app may take to serve")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("app_flags", nargs="*", help="more flags for app.py, after --")
    a = p.parse_args(argv)
    report = run(a.device, a.start_limit, a.app_flags)
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

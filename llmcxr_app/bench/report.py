"""The benchmark's report: the machine it ran on, the targets met or not, a plain-text table."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from llmcxr_app.bench import agreement

GPU_TARGETS = {
    "draw_s": 1.0,
    "draw_speedup": 8.0,
    "text_tok_s": 250.0,
    "first_token_s": 0.060,
    "peak_gb": 2.5,
}
CPU_TARGETS = {"first_token_s": 0.5, "draw_s": 10.0}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo") if ln.startswith("model name")), ""
    )
    return f"CPU {cpu or platform.processor()} ({torch.get_num_threads()} torch threads)"


def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def machine(device: torch.device) -> dict:
    """Where the benchmark ran: device, its name and the library versions that decide the timings."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "bitsandbytes": package_version("bitsandbytes"),
        "python": platform.python_version(),
    }


def targets(report: dict, device: torch.device) -> list[dict]:
    res = report["results"]
    ours, hf = res.get("fast"), res.get("hf")
    if ours is None:
        return []
    out = []
    if device.type == "cuda" and (report["shape"], report["quantization"], report["layers"]) == (
        "official",
        "nf4",
        32,
    ):
        values = {
            "draw_s": ours["draw_s"],
            "text_tok_s": ours["text_tok_s"],
            "first_token_s": ours["first_token_s"],
            "peak_gb": (ours["peak_bytes"] or 0) / 1e9,
            "draw_speedup": hf["draw_s"] / ours["draw_s"] if hf else None,
        }
        for name, limit in GPU_TARGETS.items():
            higher = name in ("text_tok_s", "draw_speedup")
            v = values[name]
            out.append(
                {
                    "name": name,
                    "target": (">= " if higher else "<= ") + str(limit),
                    "value": v,
                    "met": None if v is None else (v >= limit if higher else v <= limit),
                }
            )
    elif device.type == "cpu" and report["shape"] in ("demo", "demo-random"):
        for name, limit in CPU_TARGETS.items():
            out.append(
                {"name": name, "target": f"<= {limit}", "value": ours[name], "met": ours[name] <= limit}
            )
    return out


def table(report: dict) -> str:
    rows = [
        (
            "path",
            "mode",
            "warm-up s",
            "first token ms",
            "text tok/s",
            "report->CXR s",
            "CPU: first ms",
            "tok/CPU-s",
            "CXR CPU-s",
            "peak MB",
            "ids = hf",
        )
    ]
    for path, r in report["results"].items():
        agree = r.get("ids_vs_hf")
        rows.append(
            (
                path,
                r["mode"],
                f"{r['warmup_s']:.2f}",
                f"{r['first_token_s'] * 1e3:.1f}",
                f"{r['text_tok_s']:.1f}",
                f"{r['draw_s']:.3f}",
                f"{r['first_token_cpu_s'] * 1e3:.1f}",
                f"{r['text_tok_per_cpu_s']:.1f}",
                f"{r['draw_cpu_s']:.3f}",
                "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 1e6:.0f}",
                "-" if agree is None else agreement.summary(agree),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for t in report["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {t['name']} {t['target']}: {value} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)

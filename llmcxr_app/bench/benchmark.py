"""Benchmark: the eager Hugging Face ``generate`` baseline against our generation paths, same model, one run.

    python -m llmcxr_app.bench                                   # weights/demo, else the demo shape (random)
    python -m llmcxr_app.bench --shape tiny --repeats 1          # CI smoke test
    python -m llmcxr_app.bench --shape official --quantization nf4 --device cuda   # dolly-v2-3b shapes, random

Per path: first-token latency with a 256-id image prompt (CXR -> report), greedy text decode rate over
``--new-tokens`` ids (stop ids masked in every path, so trained models do not stop early), report -> CXR end
to end (prompt, ``<``, the grid's image ids, VQ-GAN decode; no previews), peak memory during the timed runs
(CUDA: max_memory_allocated; CPU: the process's peak RSS, VmHWM, reset first), warm-up/compile time. Times
are medians over ``--repeats``. Greedy ids of each path are compared with the baseline's. Paths:
hf (model.generate, DynamicCache), fast (the app's default: fastpath.FastPath with its device defaults),
eager (generation.py's DynamicCache steps), static (static cache, eager), compiled (static cache + compile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from llmcxr_app import config as cfg
from llmcxr_app import protocol
from llmcxr_app.bench.models import FINDINGS, BenchModel, build_random, load_weights
from llmcxr_app.config import SamplingConfig
from llmcxr_app.engine import generation
from llmcxr_app.engine.fastpath import FastPath, FastPathConfig
from llmcxr_app.imaging import images as imaging

PATHS = ("hf", "fast", "eager", "static", "compiled")
GPU_TARGETS = {"draw_s": 1.0, "draw_speedup": 8.0, "text_tok_s": 250.0, "first_token_s": 0.060, "peak_gb": 2.5}  # fmt: skip
CPU_TARGETS = {"first_token_s": 0.5, "draw_s": 10.0}


# ---------------------------------------------------------------------------------------------------------
# Measurement helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        except OSError:
            pass


def _peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _now() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the second is the steadier figure."""
    return time.perf_counter(), time.process_time()


class _Clock:
    """A transformers streamer that only records when each put() arrives (the first put is the prompt)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def put(self, value: Any) -> None:
        self.times.append(_now())

    def end(self) -> None:
        pass


class _Mask:
    """A LogitsProcessor: ``<`` forced at the first new token, then image ids only (draw); or text ids
    without the stop ids (text)."""

    def __init__(self, layout: protocol.TokenLayout, n_prompt: int, kind: str, stop_ids: list[int]):
        self.layout, self.n_prompt, self.kind, self.stop_ids = layout, n_prompt, kind, stop_ids

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        lo, hi = self.layout.vocab_size, self.layout.total_vocab
        if self.kind == "text":
            out[:, :lo] = scores[:, :lo]
            out[:, self.stop_ids] = float("-inf")
        elif input_ids.shape[1] == self.n_prompt:
            out[:, self.layout.image_open_id] = 0.0
        else:
            out[:, lo:hi] = scores[:, lo:hi]
        return out


def _no_stop(fast: FastPath | None, stop_ids: list[int]) -> tuple[Any, Any]:
    """(prefill_fn, step) that mask the stop ids, so text runs for exactly max_new_tokens."""
    pre = fast.prefill if fast else generation.prefill
    stp = fast.step if fast else generation.decode_step

    def prefill_fn(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, past = pre(model, ids)
        logits[:, stop_ids] = float("-inf")
        return logits, past

    def step(model: Any, token: int, past: Any, position: int) -> tuple[torch.Tensor, Any]:
        logits, past = stp(model, token, past, position)
        logits[:, stop_ids] = float("-inf")
        return logits, past

    return prefill_fn, step


def _stop_ids(bm: BenchModel) -> list[int]:
    eos = getattr(bm.tokenizer, "eos_token_id", None)
    return sorted({bm.layout.end_id} | ({int(eos)} if eos is not None else set()))


def _hf_run(
    bm: BenchModel, ids: list[int], kind: str, n_new: int
) -> tuple[list[int], list[tuple[float, float]]]:
    from transformers import LogitsProcessorList

    x = torch.tensor([ids], device=bm.device)
    clock, stop = _Clock(), _stop_ids(bm)
    _sync(bm.device)
    t0 = _now()
    out = bm.model.generate(
        input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, do_sample=False, use_cache=True,
        eos_token_id=stop, pad_token_id=stop[0], streamer=clock, temperature=None, top_p=None, top_k=None,
        logits_processor=LogitsProcessorList([_Mask(bm.layout, len(ids), kind, stop)]),
    )  # fmt: skip
    return out[0, len(ids) :].tolist(), [t0, *clock.times[1:]]  # start, then one stamp per new id


def run_path(bm: BenchModel, path: str, prompts: dict, n_new: int, repeats: int) -> dict:
    """Warm up, then time one path; returns its figures (seconds, tokens/s, bytes) and generated ids."""
    device = bm.device
    fast, compile_s = None, None
    t = time.perf_counter()
    if path != "hf":
        config = {
            "fast": FastPathConfig(),
            "eager": FastPathConfig(static_cache=False, compile=False),
            "static": FastPathConfig(static_cache=True, compile=False),
            "compiled": FastPathConfig(static_cache=True, compile=True),
        }[path]
        fast = FastPath(bm.model, context_length=bm.context_length, config=config)
        compile_s = fast.warmup(bm.layout)["s"]
    greedy, stop = SamplingConfig(temperature=0.0, max_new_tokens=n_new), _stop_ids(bm)
    grid_tokens = bm.vqgan.grid_tokens

    def text_run() -> tuple[list[int], list[float]]:
        """ids, [first-token s, tokens/s after it] in wall time, then the same in process CPU time."""
        if fast is None:
            new, stamps = _hf_run(bm, prompts["image"], "text", n_new)
        else:
            pre, stp = _no_stop(fast, stop)
            stamps, new = [_now()], []
            for piece in generation.generate_text(
                bm.model, bm.layout, bm.tokenizer, prompts["image"], greedy, None, bm.context_length,
                prefill_fn=pre, step=stp,
            ):  # fmt: skip
                stamps.append(_now())
                new.append(piece.token_id)
        figures = []
        for k in (0, 1):
            first, last = stamps[1][k] - stamps[0][k], stamps[-1][k] - stamps[1][k]
            figures += [first, (len(new) - 1) / max(last, 1e-9)]
        return new, figures

    def draw_run() -> tuple[list[int], list[float]]:
        """codes, [wall s, CPU s]."""
        _sync(device)
        t0 = _now()
        if fast is None:
            new, _ = _hf_run(bm, prompts["draw"], "draw", grid_tokens + 1)
            codes = bm.layout.unshift(new[1:])
        else:
            stream = fast.generate_image(
                bm.model, bm.layout, prompts["draw"], grid_tokens, greedy, None, bm.context_length
            )
            codes = list(stream)[-1].codes
        imaging.codes_to_image(torch.tensor(codes), bm.vqgan)  # ends with a copy to the host: synchronised
        t1 = _now()
        return codes, [t1[0] - t0[0], t1[1] - t0[1]]

    text_run()  # untimed first calls: allocator, kernels, lazy imports
    draw_run()
    warmup_s = time.perf_counter() - t
    _reset_peak(device)
    texts = [text_run() for _ in range(repeats)]
    draws = [draw_run() for _ in range(repeats)]
    return {
        "mode": "hf-generate" if fast is None else fast.mode,
        "fallback": None if fast is None else fast.fallback_reason,
        "compile_s": compile_s,  # FastPath.warmup: compile and capture every cache bucket
        "warmup_s": warmup_s,  # compile_s plus one untimed text and draw run
        "first_token_s": statistics.median(r[1][0] for r in texts),
        "text_tok_s": statistics.median(r[1][1] for r in texts),
        "text_tokens": len(texts[0][0]),
        "draw_s": statistics.median(r[1][0] for r in draws),
        # The same in this process's CPU seconds (all its threads): steadier than wall time on a shared CPU.
        "first_token_cpu_s": statistics.median(r[1][2] for r in texts),
        "text_tok_per_cpu_s": statistics.median(r[1][3] for r in texts),
        "draw_cpu_s": statistics.median(r[1][1] for r in draws),
        "peak_bytes": _peak_bytes(device),
        "_ids": {"text": texts[0][0], "draw": draws[0][0]},
    }


# ---------------------------------------------------------------------------------------------------------
# Report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo") if ln.startswith("model name")), ""
    )
    return f"CPU {cpu or platform.processor()} ({torch.get_num_threads()} torch threads)"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _targets(report: dict, device: torch.device) -> list[dict]:
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
            "draw_s": ours["draw_s"], "text_tok_s": ours["text_tok_s"], "first_token_s": ours["first_token_s"],
            "peak_gb": (ours["peak_bytes"] or 0) / 1e9,
            "draw_speedup": hf["draw_s"] / ours["draw_s"] if hf else None,
        }  # fmt: skip
        for name, limit in GPU_TARGETS.items():
            higher = name in ("text_tok_s", "draw_speedup")
            v = values[name]
            out.append({"name": name, "target": (">= " if higher else "<= ") + str(limit), "value": v,
                        "met": None if v is None else (v >= limit if higher else v <= limit)})  # fmt: skip
    elif device.type == "cpu" and report["shape"] in ("demo", "demo-random"):
        for name, limit in CPU_TARGETS.items():
            out.append(
                {"name": name, "target": f"<= {limit}", "value": ours[name], "met": ours[name] <= limit}
            )
    return out


def _table(report: dict) -> str:
    rows = [("path", "mode", "warm-up s", "first token ms", "text tok/s", "report->CXR s", "CPU: first ms",
             "tok/CPU-s", "CXR CPU-s", "peak MB", "ids = hf")]  # fmt: skip
    for path, r in report["results"].items():
        match = r.get("ids_match_hf")
        rows.append((
            path, r["mode"], f"{r['warmup_s']:.2f}", f"{r['first_token_s'] * 1e3:.1f}", f"{r['text_tok_s']:.1f}",
            f"{r['draw_s']:.3f}", f"{r['first_token_cpu_s'] * 1e3:.1f}", f"{r['text_tok_per_cpu_s']:.1f}",
            f"{r['draw_cpu_s']:.3f}", "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 1e6:.0f}",
            "-" if match is None else ("yes" if all(match.values()) else f"no {match}"),
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for t in report["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {t['name']} {t['target']}: {value} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llmcxr_app.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=("tiny", "demo-random", "official"), default=None,
                   help="random weights of this shape (default: --weights demo when weights/demo exists, else demo-random)")  # fmt: skip
    p.add_argument("--weights", default=None, help="'demo' or a directory laid out like weights/demo")
    p.add_argument("--layers", type=int, default=None, help="override the layer count of a --shape")
    p.add_argument("--quantization", default="auto", choices=cfg.QUANTIZATIONS)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--new-tokens", type=int, default=256, help="greedy text tokens per text run")
    p.add_argument("--paths", default="hf,fast", help=f"comma-separated, from {','.join(PATHS)}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the report here")
    a = p.parse_args(argv)
    paths = [s.strip() for s in a.paths.split(",") if s.strip()]
    if unknown := sorted(set(paths) - set(PATHS)):
        p.error(f"unknown paths {unknown}; choose from {PATHS}")
    if a.threads:
        torch.set_num_threads(a.threads)
    from llmcxr_app.loading.runtime import resolve_device, resolve_quantization

    device = resolve_device(a.device)
    quant = resolve_quantization(a.quantization, device)
    if a.shape is None and a.weights is None:
        a.weights = "demo" if (cfg.DEMO_LLM_DIR / "config.json").is_file() else None
        a.shape = None if a.weights else "demo-random"
    if a.shape == "official" and device.type == "cpu" and (a.layers or 32) > 4:
        warnings.warn("--shape official on a CPU builds 2.8 B parameters (11 GB in fp32) and decodes at seconds "
                      "per token; consider --layers 2.", stacklevel=1)  # fmt: skip
    t = time.perf_counter()
    if a.weights:
        bm = load_weights(a.weights, device=str(device), quantization=quant)
        shape = "demo" if a.weights == "demo" else "weights"
    else:
        bm = build_random(a.shape, device=device, quantization=quant, layers=a.layers)
        shape = a.shape
    load_s = time.perf_counter() - t
    codes = torch.randint(
        0, bm.layout.codebook_size, (bm.vqgan.grid_tokens,), generator=torch.Generator().manual_seed(0)
    )
    prompts = {
        "image": protocol.build_prompt_ids(bm.tokenizer, protocol.CXR_TO_REPORT_INSTRUCTIONS[0], image_codes=codes.tolist(),
                                           codebook_size=bm.layout.codebook_size, grid_tokens=bm.vqgan.grid_tokens),
        "draw": protocol.build_prompt_ids(bm.tokenizer, protocol.REPORT_TO_CXR_INSTRUCTIONS[0], input_text=FINDINGS,
                                          codebook_size=bm.layout.codebook_size),
    }  # fmt: skip
    n_new = min(a.new_tokens, bm.context_length - len(prompts["image"]))
    results: dict[str, dict] = {}
    load_before = _loadavg()
    with torch.inference_mode():
        for path in paths:
            print(f"[bench] {path} ...", file=sys.stderr, flush=True)
            results[path] = run_path(bm, path, prompts, n_new, a.repeats)
    if "hf" in results:
        for r in results.values():
            r["ids_match_hf"] = {k: r["_ids"][k] == results["hf"]["_ids"][k] for k in ("text", "draw")}
    for r in results.values():
        r.pop("_ids")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m llmcxr_app.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device),
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "bitsandbytes": _version("bitsandbytes"),
        "python": platform.python_version(),
        "shape": shape,
        "source": bm.source,
        "layers": bm.model.config.num_hidden_layers,
        "parameters": sum(p.numel() for p in bm.model.parameters()),
        "quantization": quant,
        "repeats": a.repeats,
        "load_s": load_s,
        "loadavg": {"before": load_before, "after": _loadavg()},  # 1-minute load: others on a shared machine
        "prompt_tokens": {k: len(v) for k, v in prompts.items()},
        "new_tokens": n_new,
        "image_tokens": bm.vqgan.grid_tokens,
        "results": results,
    }
    report["targets"] = _targets(report, device)
    print(_table(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

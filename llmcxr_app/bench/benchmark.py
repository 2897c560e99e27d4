"""Benchmark: the eager Hugging Face ``generate`` baseline against our generation paths, same model, one run.

    python -m llmcxr_app.bench                                   # weights/demo, else the demo shape (random)
    python -m llmcxr_app.bench --shape tiny --repeats 1          # CI smoke test
    python -m llmcxr_app.bench --shape official --quantization nf4 --device cuda   # dolly-v2-3b shapes, random
    python -m llmcxr_app.bench startup                           # app.py: seconds until the page answers

Per path: first-token latency with a 256-id image prompt (CXR -> report), greedy text decode rate over
``--new-tokens`` ids (stop ids masked in every path, so trained models do not stop early), report -> CXR end
to end (prompt, ``<``, the grid's image ids, VQ-GAN decode; no previews), peak memory during the timed runs
(CUDA: max_memory_allocated; CPU: the process's peak RSS, VmHWM, reset first), warm-up/compile time. Times
are medians over ``--repeats``. Greedy ids of each path are compared with the baseline's. Paths:
hf (model.generate, DynamicCache), fast (the app's default: engine/fastpath.FastPath with its device defaults),
eager (engine/generation.py's DynamicCache steps), static (static cache, eager), compiled (static cache + compile).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from llmcxr_app import config as cfg
from llmcxr_app import protocol
from llmcxr_app.bench import agreement
from llmcxr_app.bench.measure import run_path
from llmcxr_app.bench.models import FINDINGS, BenchModel, build_random, load_weights
from llmcxr_app.bench.report import loadavg, machine, table, targets
from llmcxr_app.loading.runtime import resolve_device, resolve_quantization

PATHS = ("hf", "fast", "eager", "static", "compiled")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmcxr_app.bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--shape",
        choices=("tiny", "demo-random", "official"),
        default=None,
        help="random weights of this shape (default: --weights demo when weights/demo exists, else demo-random)",
    )
    p.add_argument("--weights", default=None, help="'demo' or a directory laid out like weights/demo")
    p.add_argument("--layers", type=int, default=None, help="override the layer count of a --shape")
    p.add_argument("--quantization", default="auto", choices=cfg.QUANTIZATIONS)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--new-tokens", type=int, default=256, help="greedy text tokens per text run")
    p.add_argument("--paths", default="hf,fast", help=f"comma-separated, from {','.join(PATHS)}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the report here")
    return p


def _model(a: argparse.Namespace, device: torch.device, quant: str) -> tuple[BenchModel, str]:
    """The model to measure and its shape name (loaded weights, or random weights of a shape)."""
    if a.shape is None and a.weights is None:
        a.weights = "demo" if (cfg.DEMO_LLM_DIR / "config.json").is_file() else None
        a.shape = None if a.weights else "demo-random"
    if a.shape == "official" and device.type == "cpu" and (a.layers or 32) > 4:
        warnings.warn(
            "--shape official on a CPU builds 2.8 B parameters (11 GB in fp32) and decodes at seconds "
            "per token; consider --layers 2.",
            stacklevel=1,
        )
    if a.weights:
        bm = load_weights(a.weights, device=str(device), quantization=quant)
        return bm, "demo" if a.weights == "demo" else "weights"
    return build_random(a.shape, device=device, quantization=quant, layers=a.layers), a.shape


def _prompts(bm: BenchModel) -> dict[str, list[int]]:
    """A CXR -> report prompt around random image codes, and a report -> CXR prompt of FINDINGS."""
    codes = torch.randint(
        0, bm.layout.codebook_size, (bm.vqgan.grid_tokens,), generator=torch.Generator().manual_seed(0)
    )
    return {
        "image": protocol.build_prompt_ids(
            bm.tokenizer,
            protocol.CXR_TO_REPORT_INSTRUCTIONS[0],
            image_codes=codes.tolist(),
            codebook_size=bm.layout.codebook_size,
            grid_tokens=bm.vqgan.grid_tokens,
        ),
        "draw": protocol.build_prompt_ids(
            bm.tokenizer,
            protocol.REPORT_TO_CXR_INSTRUCTIONS[0],
            input_text=FINDINGS,
            codebook_size=bm.layout.codebook_size,
        ),
    }


def _progress(r: dict) -> str:
    """One path's figures on one line, printed as soon as the path ends (a run cut by a timeout keeps them)."""
    compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f} s"
    return (
        f"compile {compile_s}, warm-up {r['warmup_s']:.1f} s, first token {r['first_token_s'] * 1e3:.0f} ms, "
        f"{r['text_tok_s']:.1f} tok/s, report->CXR {r['draw_s']:.2f} s, mode {r['mode']}"
    )


def _measure(bm: BenchModel, paths: list[str], prompts: dict, n_new: int, repeats: int) -> dict[str, dict]:
    """Each path's figures; with the hf baseline, whether each path's greedy ids equal the baseline's."""
    results: dict[str, dict] = {}
    with torch.inference_mode():
        for path in paths:
            print(f"[bench] {path} ...", file=sys.stderr, flush=True)
            results[path] = run_path(bm, path, prompts, n_new, repeats)
            print(f"[bench] {path}: {_progress(results[path])}", file=sys.stderr, flush=True)
    if "hf" in results:
        base = results["hf"]["_ids"]
        for r in results.values():
            r["ids_vs_hf"] = {
                kind: agreement.compare(
                    bm.model,
                    prompts[_PROMPT_OF[kind]],
                    _generated(bm, kind, base[kind]),
                    _generated(bm, kind, r["_ids"][kind]),
                )
                for kind in ("text", "draw")
            }
            r["ids_match_hf"] = {kind: a["match"] for kind, a in r["ids_vs_hf"].items()}
    for r in results.values():
        r.pop("_ids")
    return results


_PROMPT_OF = {"text": "image", "draw": "draw"}  # run kind -> the prompt it continues


def _generated(bm: BenchModel, kind: str, ids: list[int]) -> list[int]:
    """The ids a run appended to its prompt: text ids as they are; a drawing's codes as ``<`` + image ids."""
    return ids if kind == "text" else [bm.layout.image_open_id, *bm.layout.shift(ids)]


def _bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored (4-bit weights count their packed bytes)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["startup"]:  # `python -m llmcxr_app.bench startup`: app.py's start-up (bench/startup.py)
        from llmcxr_app.bench import startup

        return startup.main(args[1:])
    p = _parser()
    a = p.parse_args(argv)
    # The fast path logs each cache bucket's compile time: a run cut by a timeout still shows where it was.
    logging.basicConfig(format="[bench] %(message)s")
    logging.getLogger("llmcxr_app.engine.fastpath").setLevel(logging.INFO)
    paths = [s.strip() for s in a.paths.split(",") if s.strip()]
    if unknown := sorted(set(paths) - set(PATHS)):
        p.error(f"unknown paths {unknown}; choose from {PATHS}")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    quant = resolve_quantization(a.quantization, device)
    t = time.perf_counter()
    bm, shape = _model(a, device, quant)
    load_s = time.perf_counter() - t
    prompts = _prompts(bm)
    n_new = min(a.new_tokens, bm.context_length - len(prompts["image"]))
    load_before = loadavg()
    results = _measure(bm, paths, prompts, n_new, a.repeats)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m llmcxr_app.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        **machine(device),
        "shape": shape,
        "source": bm.source,
        "layers": bm.model.config.num_hidden_layers,
        "parameters": sum(p.numel() for p in bm.model.parameters()),
        "quantization": quant,
        "repeats": a.repeats,
        "load_s": load_s,
        "loadavg": {"before": load_before, "after": loadavg()},  # 1-minute load: others on a shared machine
        "prompt_tokens": {k: len(v) for k, v in prompts.items()},
        "new_tokens": n_new,
        "image_tokens": bm.vqgan.grid_tokens,
        # What is resident before any cache: the peak of each path adds its caches and activations to these.
        "memory": {"llm_bytes": _bytes(bm.model), "vqgan_bytes": _bytes(bm.vqgan)},
        "results": results,
    }
    report["targets"] = targets(report, device)
    print(table(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

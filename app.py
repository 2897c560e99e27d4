"""Start the LLM-CXR Studio web app: `python app.py [--llm DIR --vqgan-config YAML --vqgan-ckpt FILE]`.

Without weight flags it serves weights/official/ when complete, else the embedded demo model (weights/demo/).
`--models demo,demo-adapter` serves several models (registered names or directories): a picker and Compare.
"""

from __future__ import annotations

from llmcxr_app.ui import zerogpu  # first: on ZeroGPU, `spaces` must patch torch before anything touches CUDA

# isort: split
import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from llmcxr_app import redact
from llmcxr_app.cli_args import (
    add_server_args,
    add_weight_args,
    parse_models,
    server_from_args,
    settings_from_args,
)
from llmcxr_app.config import ServerConfig, Settings
from llmcxr_app.loading.weights import WeightsError
from llmcxr_app.studio.build import load_studio
from llmcxr_app.ui import app as ui


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_weight_args(parser)
    server = ServerConfig()
    # Spaces set GRADIO_SERVER_NAME=0.0.0.0 (and the port); an explicit 127.0.0.1 would be unreachable there.
    host = os.environ.get("GRADIO_SERVER_NAME", server.host)
    port = int(os.environ.get("GRADIO_SERVER_PORT", server.port))
    parser.add_argument(
        "--host", default=host, help=f"bind address (default {server.host}; 0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=port, help=f"HTTP port (default {server.port})")
    parser.add_argument(
        "--no-self-check",
        action="store_true",
        help="do not read drawings back with the model (saves one report's generation per drawing)",
    )
    parser.add_argument(
        "--models",
        metavar="A,B",
        help="serve several models, by registered name or LLM directory (e.g. demo,demo-adapter): the page "
        "gets a model picker and Compare; the first answers by default (overrides the weight flags)",
    )
    add_server_args(parser)
    args = parser.parse_args(argv)
    redact.install()  # before any upload is read: header values never reach the log
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    try:
        settings = settings_from_args(args)
        server = server_from_args(args, settings.server)
        several = _named_models(args.models, settings) if args.models else None
    except ValueError as exc:
        parser.error(str(exc))
    server = replace(server, host=args.host, port=args.port, draw_self_check=not args.no_self_check)
    if os.environ.get("SPACE_ID"):  # behind the Space's proxy every peer address is the proxy's own
        server = replace(server, trust_forwarded_for=True)
    settings = replace(settings, server=server)
    if zerogpu.on_zerogpu():  # no torch.compile there, and no GPU outside zerogpu.gpu-decorated calls
        settings = replace(settings, runtime=replace(settings.runtime, fast_path=False, warmup=False))
    log = logging.getLogger("llmcxr_app.app")
    t = time.perf_counter()
    try:  # the warm-up runs while the server starts; requests wait for it (Studio.start_warm_up)
        models = {}
        for name, each in (several or {settings.model.name: settings}).items():
            each = replace(each, runtime=settings.runtime, server=server)
            log.info("Loading the model %s (weights, then the warm-up in the background)", each.model.name)
            models[name] = load_studio(each, background_warm_up=True)
    except (WeightsError, ValueError) as exc:  # missing or mismatched files, an unserved model_type
        parser.exit(2, f"error: {exc}\n")
    log.info("Starting the server (%.1f s since loading began)", time.perf_counter() - t)
    # Serves until Ctrl-C or SIGTERM, then removes every file the app wrote (ui.StudioBlocks).
    served = models if several else next(iter(models.values()))
    ui.build(served, settings.server).launch(**ui.launch_kwargs(settings.server))


def _named_models(text: str, settings: Settings) -> dict[str, Settings]:
    """`--models a,b` as {short name: Settings}: the entry itself for a registered name, a directory's own
    name for a path (the picker and every answer's details use these names)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    names = [item if "/" not in item and "\\" not in item else (Path(item).name or item) for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"--models: two entries have the same name ({', '.join(names)}).")
    return {n: replace(settings, model=loc) for n, loc in zip(names, parse_models(text), strict=True)}


if __name__ == "__main__":
    main()

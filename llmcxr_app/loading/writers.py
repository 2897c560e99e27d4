"""Write trained models in the official layouts: a taming YAML + safetensors for the VQ-GAN, fp16 for shipping.

The demo-model trainer writes weights/demo with these; loading/weights.py reads them back like the official
files (docs/FORMATS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmcxr_app.modeling.vqgan import VQGAN


def save_vqgan(model: VQGAN, out: Path) -> None:
    """Official layout: a taming YAML (model.params) and the autoencoder weights (safetensors, no loss.*)."""
    import yaml
    from safetensors.torch import save_file  # heavy optional imports, only when writing

    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": {"target": "taming.models.vqgan.VQModel", "params": model.config.to_params()}}
    (out / "demo-vqgan.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    save_file(
        {k: v.contiguous().cpu() for k, v in model.state_dict().items()}, out / "demo-vqgan.safetensors"
    )


def shrink(out: Path) -> None:
    """Store the trained weights in fp16 (half the size; the loader upcasts to the runtime precision).

    The shipped model must stay small (weights/demo <= 30 MB); evaluation runs on these fp16 files.
    """
    from safetensors.torch import load_file, save_file

    for path in [out / "vqgan" / "demo-vqgan.safetensors", *sorted((out / "llm").glob("*.safetensors"))]:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
    cfg_path = out / "llm" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float16"
    cfg_path.write_text(json.dumps(cfg, indent=2))

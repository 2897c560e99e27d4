"""Which files make up a model, and their fingerprint: shared by the loader (weights.py) and hub.py.

Import-light (no torch, no transformers), so hub.py can check a download is complete without loading code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmcxr_app import config as cfg
from llmcxr_app.loading.checkpoint_io import WeightsError

README = "weights/README.md"


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (shorter messages), else as given."""
    try:
        return str(path.relative_to(cfg.REPO_ROOT))
    except ValueError:
        return str(path)


# transformers' preference order: safetensors before .bin, a single file before its sharded index.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def llm_hint() -> str:
    return (
        f"The official LLM is the directory {cfg.OFFICIAL_LLM_DIR.name}/ (config.json, tokenizer files, "
        f"pytorch_model.bin) from {cfg.OFFICIAL_LLM_DIR.name}.tar of the LLM-CXR release; unpack it to "
        f"{rel(cfg.OFFICIAL_LLM_DIR)}/ (or pass --llm / set {cfg.ENV_LLM}). See {README}."
    )


def llm_weight_files(path: Path) -> list[Path]:
    """The files transformers will read, checked to be complete; raises WeightsError naming what is missing."""
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        shards = sorted(set(json.loads(file.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise WeightsError(
                f"{path}: {len(missing)} of {len(shards)} weight shards are missing: {missing[:3]}."
            )
        return [file, *(path / s for s in shards)]
    hint = ""
    if (path / "zero_to_fp32.py").exists() or any(path.glob("global_step*")):
        hint = (
            " This is a DeepSpeed checkpoint: convert it with `python zero_to_fp32.py . pytorch_model.bin`."
        )
    raise WeightsError(f"{path} holds no weights (expected one of {list(WEIGHT_FILES)}).{hint} {llm_hint()}")


def weight_hash(files: list[Path]) -> str:
    """A short stable fingerprint of weight files: sha256 over each name, size, first and last MiB.

    Reading 2 MiB per file keeps it instant on the 11 GB official file; any re-save, different checkpoint or
    truncated download changes the size or those bytes. Paths do not count, so a moved directory keeps it.
    A model's fingerprint (load_model) covers every file that changes an answer: the LLM's weight files and
    the VQ-GAN's checkpoint and config.
    """
    h = hashlib.sha256()
    mib = 1 << 20
    for file in sorted(files, key=lambda f: f.name):
        size = file.stat().st_size
        h.update(f"{file.name}\0{size}\0".encode())
        with open(file, "rb") as f:
            h.update(f.read(mib))
            if size > mib:
                f.seek(max(mib, size - mib))
                h.update(f.read())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class ModelHashes:
    """The fingerprints of one model (each 12 hex chars, `weight_hash`), for provenance."""

    llm: str  # the LLM's weight files (files.llm_weight_files)
    vqgan: str  # the VQ-GAN's checkpoint, and its YAML config when one is given
    combined: str  # all of those files together: the model's fingerprint (StudioInfo.weight_hash)


def model_hashes(llm_files: Sequence[Path], vqgan_files: Sequence[Path]) -> ModelHashes:
    """The LLM's, the VQ-GAN's and the whole model's fingerprints (see `weight_hash`)."""
    llm, vqgan = list(llm_files), list(vqgan_files)
    return ModelHashes(llm=weight_hash(llm), vqgan=weight_hash(vqgan), combined=weight_hash(llm + vqgan))


def checkpoint_model_type(llm: str) -> str:
    """`model_type` in a local model directory's config.json: what decides which backend serves it.
    "" when there is none or it is unreadable (a Hub id, a missing directory: the loader then says what is
    wrong)."""
    try:
        config = json.loads((Path(llm) / "config.json").read_text(encoding="utf-8"))
        return str(config.get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""

"""What a training round writes into its OUT folder: the LLM in the Hugging Face layout, with what the
checkpoint declares to the app in config.json, and the training record (OUT/training.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcxr_app import protocol
from llmcxr_app.loading.writers import shrink


def save_llm(llm: Any, tokenizer: Any, out: Path, codebook_size: int, declared: dict[str, Any]) -> None:
    """OUT/llm (fp16, shrink): ``llm`` and ``tokenizer``, generation ids set from the protocol; each
    ``declared`` key goes into config.json with its value, and a key whose value is None is removed (a
    further round resets what its start declared)."""
    (out / "llm").mkdir(parents=True, exist_ok=True)
    llm.generation_config.eos_token_id = protocol.token_layout(tokenizer, codebook_size).end_id
    llm.generation_config.pad_token_id = tokenizer.pad_token_id
    for key, value in declared.items():  # saved into config.json with the rest
        if value is not None:
            setattr(llm.config, key, value)
        elif hasattr(llm.config, key):
            delattr(llm.config, key)
    llm.save_pretrained(out / "llm")
    tokenizer.save_pretrained(out / "llm")
    shrink(out)


def write_record(out: Path, record: dict, continue_llm: bool) -> None:
    """OUT/training.json; a further round keeps the earlier ones under previous_rounds."""
    previous = out / "training.json"
    if continue_llm and previous.exists():
        old = json.loads(previous.read_text())
        record["previous_rounds"] = [*old.pop("previous_rounds", []), old]
    previous.write_text(json.dumps(record, indent=2))

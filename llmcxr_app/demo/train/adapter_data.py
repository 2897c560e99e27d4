"""Training examples of the demo adapter model, from the token demo's phantoms and texts.

The texts are the token demo's own (reports.py: reports, VQA pairs, declined plain instructions; protocol's
instruction phrasings); only the image changes: `<image>` in the input stands for n_image_tokens ids that
LLaVA fills with projected vision features, instead of 256 VQ-GAN code ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmcxr_app import protocol
from llmcxr_app.demo.data import reports
from llmcxr_app.demo.data.samples import Sample
from llmcxr_app.demo.train.adapter_model import IMAGE_TOKEN


@dataclass(frozen=True)
class AdapterExample:
    """One tokenized example; `ids` already hold one `<image>` id per image patch."""

    ids: list[int]  # prompt, response, "### End"
    n_prompt: int  # leading ids excluded from the loss (through "### Response:\n")
    task: str  # protocol.TASK_*
    image: int  # index of its phantom in the sample list; -1 for none


def prompt_ids(tokenizer: Any, instruction: str, with_image: bool, n_image: int) -> list[int]:
    """Ids of the generation prompt: protocol.format_prompt with `<image>` as the input, expanded to n_image
    ids (what LlavaProcessor makes of the rendered chat template)."""
    text = protocol.format_prompt(instruction, IMAGE_TOKEN if with_image else None)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    out: list[int] = []
    for i in tokenizer.encode(text, add_special_tokens=False):
        out += [i] * n_image if i == image_id else [i]
    return out


def make_example(
    tokenizer: Any, instruction: str, answer: str, image: int, task: str, n_image: int
) -> AdapterExample:
    """Prompt + "{answer}\\n\\n" + "### End", as protocol.build_training_ids writes a text response."""
    prompt = prompt_ids(tokenizer, instruction, image >= 0, n_image)
    end_id = tokenizer.convert_tokens_to_ids(protocol.END_KEY)
    body = list(tokenizer.encode(f"{answer}\n\n", add_special_tokens=False))
    return AdapterExample(prompt + body + [end_id], len(prompt), task, image)


def report_examples(
    tokenizer: Any, samples: Sequence[Sample], rng: np.random.Generator, n_image: int
) -> list[AdapterExample]:
    """Stage 1 (alignment): CXR -> report for every phantom, upstream's instruction phrasings at random."""
    return [
        make_example(
            tokenizer,
            str(rng.choice(protocol.CXR_TO_REPORT_INSTRUCTIONS)),
            s.report,
            i,
            protocol.TASK_REPORT,
            n_image,
        )
        for i, s in enumerate(samples)
    ]


def instruction_examples(
    tokenizer: Any,
    samples: Sequence[Sample],
    rng: np.random.Generator,
    n_image: int,
    qa_per_image: int,
    plain_fraction: float,
) -> list[AdapterExample]:
    """Stage 2: the token demo's task mix without drawing: report, VQA, declined plain instructions."""
    out = report_examples(tokenizer, samples, rng, n_image)
    for i, s in enumerate(samples):
        for question, answer in reports.make_qa(s.findings, rng, qa_per_image):
            out.append(make_example(tokenizer, question, answer, i, protocol.TASK_VQA, n_image))
    for question, answer in reports.plain_instructions(rng, int(round(plain_fraction * len(samples)))):
        out.append(make_example(tokenizer, question, answer, -1, protocol.TASK_INSTRUCT, n_image))
    return out


def text_documents(tokenizer: Any, texts: Sequence[str], rng: np.random.Generator) -> list[AdapterExample]:
    """The base LM's data: each text + eos, loss on every id; plus declined plain instructions in the Dolly
    format (so the base already knows the prompt frame and "### End")."""
    eos = tokenizer.eos_token_id
    out = [
        AdapterExample(list(tokenizer.encode(t, add_special_tokens=False)) + [eos], 0, "text", -1)
        for t in texts
    ]
    for question, answer in reports.plain_instructions(rng, len(texts) // 10):
        ex = make_example(tokenizer, question, answer, -1, protocol.TASK_INSTRUCT, 0)
        out.append(AdapterExample(ex.ids, 0, "text", -1))
    return out


def image_rows(batch: Sequence[AdapterExample]) -> list[int]:
    """The phantom index of each example that has an image, in batch order (the order LLaVA fills image ids;
    samples.collate pads the ids and masks the prompt)."""
    return [e.image for e in batch if e.image >= 0]

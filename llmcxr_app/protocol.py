"""The LLM-CXR prompt and token protocol, in one place.

Everything here must match upstream (hyn2028/llm-cxr, `training/consts.py`, `training/generate.py`,
`training/mimiccxr_vq_dataset.py`) exactly, because the official weights were trained on these strings.

Image tokens live *after* the tokenizer's vocabulary: VQ index k is token id ``k + len(tokenizer)``. The
tokenizer itself does not know them; the LLM's embedding has ``len(tokenizer) + codebook_size`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

INTRO_BLURB = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
INSTRUCTION_KEY = "### Instruction:"
INPUT_KEY = "Input:"
RESPONSE_KEY = "### Response:"
END_KEY = "### End"
RESPONSE_KEY_NL = f"{RESPONSE_KEY}\n"
IMAGE_PLACEHOLDER = "<image>"
# The special tokens upstream adds to the dolly tokenizer; `### Response:\n` is one token.
SPECIAL_TOKENS = (END_KEY, INSTRUCTION_KEY, RESPONSE_KEY_NL)

OFFICIAL_CODEBOOK_SIZE = 1024
OFFICIAL_GRID_TOKENS = 256  # 16 x 16 latent grid of the f16 VQ-GAN at 256 px

# Upstream's ten phrasings per direction (training/mimiccxr_vq_dataset.py), verbatim.
REPORT_TO_CXR_INSTRUCTIONS = (
    "Generate a chest X-ray image that corresponds to the entered free-text radiology reports for the chest X-ray image.",
    "Use the free-text radiology reports for the chest X-ray image to produce a corresponding chest X-ray image.",
    "Utilize the entered free-text radiology reports for the chest X-ray image to create a corresponding chest X-ray image.",
    "Create a chest X-ray image that matches the free-text radiology reports entered for the chest X-ray image.",
    "Produce a chest X-ray image that is consistent with the free-text radiology reports entered for the chest X-ray image.",
    "Based on the free-text radiology reports for the chest X-ray image, generate a corresponding chest X-ray image.",
    "Use the free-text radiology reports entered for the chest X-ray image to create a corresponding chest X-ray image.",
    "Generate a chest X-ray image that is in accordance with the free-text radiology reports for the chest X-ray image entered.",
    "Create a chest X-ray image that corresponds to the free-text radiology reports entered for the chest X-ray image.",
    "Utilize the entered free-text radiology reports for the chest X-ray image to produce a corresponding chest X-ray image.",
)
CXR_TO_REPORT_INSTRUCTIONS = (
    "Generate free-text radiology reports for the entered chest X-ray images.",
    "Use the entered chest X-ray images to create corresponding free-text radiology reports.",
    "Based on the entered chest X-ray images, produce free-text radiology reports.",
    "Create free-text radiology reports that correspond to the entered chest X-ray images.",
    "Utilize the entered chest X-ray images to generate corresponding free-text radiology reports.",
    "Generate free-text radiology reports in accordance with the entered chest X-ray images.",
    "Use the entered chest X-ray images to create accurate free-text radiology reports.",
    "Produce free-text radiology reports that match the entered chest X-ray images.",
    "Create free-text radiology reports that are consistent with the entered chest X-ray images.",
    "Utilize the entered chest X-ray images to generate comprehensive free-text radiology reports.",
)

# Task names used across the app (UI modes, CLI sub-commands, provenance).
TASK_REPORT = "report"  # CXR -> free-text report
TASK_DRAW = "draw"  # free-text findings -> CXR
TASK_VQA = "vqa"  # question about a CXR
TASK_INSTRUCT = "instruct"  # plain instruction, no input
TASKS = (TASK_REPORT, TASK_DRAW, TASK_VQA, TASK_INSTRUCT)


def format_prompt(instruction: str, input_text: str | None = None) -> str:
    """The Dolly-format generation prompt, ending with the response key and its newline."""
    if input_text is None:
        return f"{INTRO_BLURB}\n\n{INSTRUCTION_KEY}\n{instruction}\n\n{RESPONSE_KEY_NL}"
    return (
        f"{INTRO_BLURB}\n\n{INSTRUCTION_KEY}\n{instruction}\n\n{INPUT_KEY}\n{input_text}\n\n{RESPONSE_KEY_NL}"
    )


@dataclass(frozen=True)
class TokenLayout:
    """Token ids the protocol relies on, read once from a tokenizer."""

    vocab_size: int  # len(tokenizer); image token k has id k + vocab_size
    codebook_size: int  # number of VQ-GAN codebook entries (1024 officially)
    response_key_id: int  # id of "### Response:\n"
    end_id: int  # id of "### End"; generation stops here
    placeholder_ids: tuple[int, int, int]  # ids of "<", "image", ">" as "<image>" tokenizes

    @property
    def image_open_id(self) -> int:
        """The "<" id that precedes the 256 image ids in prompts and in draw responses."""
        return self.placeholder_ids[0]

    @property
    def image_close_id(self) -> int:
        """The ">" id that follows the image ids."""
        return self.placeholder_ids[2]

    @property
    def total_vocab(self) -> int:
        """Rows the LLM's embedding must have."""
        return self.vocab_size + self.codebook_size

    def is_image_id(self, token_id: int) -> bool:
        return self.vocab_size <= token_id < self.total_vocab

    def shift(self, codes: Sequence[int]) -> list[int]:
        """VQ codes (0..codebook_size-1) -> LLM token ids."""
        return [int(c) + self.vocab_size for c in codes]

    def unshift(self, ids: Sequence[int]) -> list[int]:
        """LLM image token ids -> VQ codes."""
        return [int(i) - self.vocab_size for i in ids]


def token_layout(tokenizer: Any, codebook_size: int = OFFICIAL_CODEBOOK_SIZE) -> TokenLayout:
    """Read and check the ids the protocol needs from a Hugging Face tokenizer.

    Raises ValueError when the tokenizer lacks a special token or splits ``<image>`` other than into three ids.
    """
    ids = {}
    for token in SPECIAL_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(
                f"The tokenizer does not hold the special token {token!r} as a single id (got {encoded}); "
                f"expected the LLM-CXR tokenizer with additional special tokens {list(SPECIAL_TOKENS)}."
            )
        ids[token] = encoded[0]
    placeholder = tokenizer.encode(IMAGE_PLACEHOLDER, add_special_tokens=False)
    if len(placeholder) != 3:
        raise ValueError(
            f"The tokenizer splits {IMAGE_PLACEHOLDER!r} into {len(placeholder)} ids {placeholder}; "
            "expected exactly three ('<', 'image', '>') as the GPT-NeoX tokenizer does."
        )
    if codebook_size <= 0:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}.")
    return TokenLayout(
        vocab_size=len(tokenizer),
        codebook_size=codebook_size,
        response_key_id=ids[RESPONSE_KEY_NL],
        end_id=ids[END_KEY],
        placeholder_ids=(placeholder[0], placeholder[1], placeholder[2]),
    )


def check_codes(codes: Sequence[int], codebook_size: int, grid_tokens: int) -> list[int]:
    """Validate VQ codes: exactly ``grid_tokens`` ints in [0, codebook_size)."""
    codes = [int(c) for c in codes]
    if len(codes) != grid_tokens:
        raise ValueError(f"An image is {grid_tokens} VQ codes (a square latent grid); got {len(codes)}.")
    bad = [c for c in codes if not 0 <= c < codebook_size]
    if bad:
        raise ValueError(
            f"VQ codes must lie in [0, {codebook_size}); got {len(bad)} out of range, e.g. {bad[:5]}."
        )
    return codes


def build_prompt_ids(
    tokenizer: Any,
    instruction: str,
    *,
    input_text: str | None = None,
    image_codes: Sequence[int] | None = None,
    codebook_size: int = OFFICIAL_CODEBOOK_SIZE,
    grid_tokens: int = OFFICIAL_GRID_TOKENS,
    max_length: int | None = None,
) -> list[int]:
    """Token ids of an LLM-CXR generation prompt.

    No input: the plain Dolly prompt. ``input_text``: a report (or any text) as the input. ``image_codes``:
    the ``grid_tokens`` VQ codes of an image; the input text becomes ``<image>`` and the middle id of its
    three-id run is replaced by the shifted codes, so the prompt holds ``<``, the image ids, ``>``.
    ``max_length`` (the model's context) is checked against the prompt length.
    """
    if not instruction or not instruction.strip():
        raise ValueError("The instruction is empty; type a question or a request.")
    if input_text is not None and image_codes is not None:
        raise ValueError("Give either an image or a text input, not both (LLM-CXR takes one input).")
    layout = token_layout(tokenizer, codebook_size)
    if image_codes is None:
        ids = list(tokenizer.encode(format_prompt(instruction, input_text), add_special_tokens=False))
    else:
        codes = check_codes(image_codes, codebook_size, grid_tokens)
        ids = list(tokenizer.encode(format_prompt(instruction, IMAGE_PLACEHOLDER), add_special_tokens=False))
        starts = [i for i in range(len(ids) - 2) if tuple(ids[i : i + 3]) == layout.placeholder_ids]
        if len(starts) != 1:
            raise ValueError(
                f"Expected exactly one {IMAGE_PLACEHOLDER!r} in the prompt, found {len(starts)}; "
                "do not type '<image>' in the question."
            )
        i = starts[0]
        ids = ids[: i + 1] + layout.shift(codes) + ids[i + 2 :]
    if max_length is not None and len(ids) >= max_length:
        raise ValueError(
            f"The prompt is {len(ids)} tokens but the model's context is {max_length}; "
            "shorten the text (leave room for the answer)."
        )
    return ids


def build_training_ids(
    tokenizer: Any,
    instruction: str,
    *,
    response_text: str | None = None,
    response_codes: Sequence[int] | None = None,
    input_text: str | None = None,
    image_codes: Sequence[int] | None = None,
    codebook_size: int = OFFICIAL_CODEBOOK_SIZE,
    grid_tokens: int = OFFICIAL_GRID_TOKENS,
) -> tuple[list[int], int]:
    """Ids of one training example in upstream's format, and the number of prompt ids to mask from the loss.

    The full text is the generation prompt followed by ``{response}\\n\\n### End`` (upstream's
    PROMPT_WITH_INPUT_FORMAT). An image response is ``<image>`` with its middle id replaced by the codes, so the
    model learns to write ``<``, the image ids, ``>``. Completion-only loss masks everything through the
    response key, as upstream's DataCollatorForCompletionOnlyLM does.
    """
    if (response_text is None) == (response_codes is None):
        raise ValueError("Give exactly one of response_text and response_codes.")
    prompt = build_prompt_ids(
        tokenizer,
        instruction,
        input_text=input_text,
        image_codes=image_codes,
        codebook_size=codebook_size,
        grid_tokens=grid_tokens,
    )
    layout = token_layout(tokenizer, codebook_size)
    if response_codes is None:
        body = list(tokenizer.encode(f"{response_text}\n\n", add_special_tokens=False))
    else:
        codes = check_codes(response_codes, codebook_size, grid_tokens)
        body = [layout.image_open_id, *layout.shift(codes), layout.image_close_id]
        body += list(tokenizer.encode("\n\n", add_special_tokens=False))
    return prompt + body + [layout.end_id], len(prompt)

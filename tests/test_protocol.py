"""protocol.py against expectations written out by hand from upstream (hyn2028/llm-cxr training/consts.py,
training/mimiccxr_vq_dataset.py), never recomputed with the code under test."""

from __future__ import annotations

import pytest
from conftest import TOKENIZER_TEXTS
from reference import parse_response

from llmcxr_app import protocol
from llmcxr_app.protocol import build_prompt_ids, format_prompt, token_layout

# upstream PROMPT_FOR_GENERATION_FORMAT_NOINPUT and PROMPT_FOR_GENERATION_FORMAT, as the .format() calls leave them
UPSTREAM_NO_INPUT = """Below is an instruction that describes a task. Write a response that appropriately completes the request.

### Instruction:
{instruction}

### Response:
"""
UPSTREAM_WITH_INPUT = """Below is an instruction that describes a task. Write a response that appropriately completes the request.

### Instruction:
{instruction}

Input:
{input}

### Response:
"""

QUESTION = "What is deep learning?"
REPORT = "Heart size is normal. No pleural effusion or pneumothorax. Lungs are clear."
CODEBOOK = 32
CODES = [(7 * i + 3) % CODEBOOK for i in range(256)]  # every code value, in a pattern that is not sorted


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return tiny_tokenizer


def _enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _id(tok, token: str) -> int:
    (i,) = _enc(tok, token)
    return i


def _placeholder_start(tok, ids: list[int]) -> int:
    """Index of "<" in the one "<", "image", ">" run, found from the tokenizer's own token strings."""
    toks = tok.convert_ids_to_tokens(ids)
    starts = [i for i in range(len(toks) - 2) if toks[i : i + 3] == ["<", "image", ">"]]
    assert len(starts) == 1
    return starts[0]


# ---------------------------------------------------------------- prompts


def test_prompt_strings_equal_upstream_templates():
    assert format_prompt(QUESTION) == UPSTREAM_NO_INPUT.format(instruction=QUESTION)
    assert format_prompt(QUESTION) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nWhat is deep learning?\n\n### Response:\n"
    )
    instr = protocol.REPORT_TO_CXR_INSTRUCTIONS[0]
    assert format_prompt(instr, REPORT) == UPSTREAM_WITH_INPUT.format(instruction=instr, input=REPORT)


def test_no_input_prompt_ids(tok):
    ids = build_prompt_ids(tok, QUESTION)
    assert ids == _enc(tok, UPSTREAM_NO_INPUT.format(instruction=QUESTION))
    assert ids[-1] == _id(tok, "### Response:\n")  # the response key with its newline is one token
    assert ids.count(_id(tok, "### Instruction:")) == 1


def test_text_input_prompt_ids(tok):
    instr = protocol.REPORT_TO_CXR_INSTRUCTIONS[3]
    ids = build_prompt_ids(tok, instr, input_text=REPORT, max_length=10_000)
    assert ids == _enc(tok, UPSTREAM_WITH_INPUT.format(instruction=instr, input=REPORT))
    assert not any(i >= len(tok) for i in ids)


@pytest.mark.parametrize("codebook", [CODEBOOK, 1024])
def test_image_prompt_replaces_middle_id_with_shifted_codes(tok, codebook):
    codes = [(37 * i + 5) % codebook for i in range(256)]
    instr = protocol.CXR_TO_REPORT_INSTRUCTIONS[0]
    text_ids = _enc(tok, UPSTREAM_WITH_INPUT.format(instruction=instr, input="<image>"))
    i = _placeholder_start(tok, text_ids)
    ids = build_prompt_ids(tok, instr, image_codes=codes, codebook_size=codebook)
    assert len(ids) == len(text_ids) - 1 + 256
    assert ids[: i + 1] == text_ids[: i + 1] and tok.convert_ids_to_tokens(ids[i]) == "<"
    assert ids[i + 1 : i + 257] == [c + len(tok) for c in codes]
    assert ids[i + 257 :] == text_ids[i + 2 :] and tok.convert_ids_to_tokens(ids[i + 257]) == ">"


def test_token_layout_reads_ids(tok):
    layout = token_layout(tok, CODEBOOK)
    assert layout.vocab_size == len(tok) and layout.total_vocab == len(tok) + CODEBOOK
    assert layout.end_id == _id(tok, "### End") and layout.response_key_id == _id(tok, "### Response:\n")
    assert tok.convert_ids_to_tokens(list(layout.placeholder_ids)) == ["<", "image", ">"]


# ---------------------------------------------------------------- responses


def _parse(tok, ids):
    return parse_response(tok, ids, codebook_size=CODEBOOK)


def test_parse_text_between_key_and_end(tok):
    prompt = build_prompt_ids(tok, QUESTION)
    ids = prompt + _enc(tok, "Heart size is normal.") + [_id(tok, "### End")] + _enc(tok, " Lungs are clear.")
    r = _parse(tok, ids)
    assert r.text == "Heart size is normal." and r.image_codes is None
    assert _parse(tok, ids[len(prompt) :]).text == "Heart size is normal."  # response ids alone
    assert _parse(tok, prompt + _enc(tok, " No effusion")).text == "No effusion"  # no end key: to the end


def test_parse_ignores_ids_before_the_response_key(tok):
    prompt = build_prompt_ids(
        tok, protocol.CXR_TO_REPORT_INSTRUCTIONS[0], image_codes=CODES, codebook_size=CODEBOOK
    )
    assert sum(i >= len(tok) for i in prompt) == 256  # an image sits in the prompt...
    r = _parse(tok, prompt + _enc(tok, "Lungs are clear.") + [_id(tok, "### End")])
    assert r.text == "Lungs are clear." and r.image_codes is None  # ...and does not count


def test_parse_image_response(tok):
    lt, gt = _id(tok, "<"), _id(tok, ">")
    prompt = build_prompt_ids(tok, protocol.REPORT_TO_CXR_INSTRUCTIONS[0], input_text=REPORT)
    image = [c + len(tok) for c in CODES]
    r = _parse(tok, prompt + [lt, *image, gt] + _enc(tok, "\n\n") + [_id(tok, "### End")])
    assert r.image_codes == CODES and r.text == ""  # the "<" ">" frame is not text
    r = _parse(tok, prompt + _enc(tok, "Findings:") + [lt, *image, gt] + _enc(tok, " done"))
    assert r.image_codes == CODES and r.text == "Findings: done"
    for n in (255, 257):
        r = _parse(tok, prompt + [lt, *([len(tok) + 1] * n), gt] + [_id(tok, "### End")])
        assert r.image_codes is None and str(len(tok)) not in r.text
    after_end = prompt + [_id(tok, "### End"), lt, *image, gt]
    assert _parse(tok, after_end).image_codes is None  # only ids before "### End" count


# ---------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def plain_tokenizer():
    """A GPT-NeoX-style tokenizer WITHOUT LLM-CXR's additional special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    t.train_from_iterator([*TOKENIZER_TEXTS, "<image>"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>")


def test_rejects_wrong_codes(tok):
    with pytest.raises(ValueError, match="An image is 256 VQ codes.*got 255"):
        build_prompt_ids(tok, QUESTION, image_codes=CODES[:255], codebook_size=CODEBOOK)
    with pytest.raises(ValueError, match=r"\[0, 32\); got 2 out of range, e.g. \[32, -1\]"):
        build_prompt_ids(tok, QUESTION, image_codes=[32, -1, *CODES[2:]], codebook_size=CODEBOOK)


def test_rejects_tokenizer_without_special_tokens(plain_tokenizer):
    with pytest.raises(
        ValueError, match="does not hold the special token '### End'.*additional special tokens"
    ):
        build_prompt_ids(plain_tokenizer, QUESTION)
    with pytest.raises(ValueError, match="special token"):
        parse_response(plain_tokenizer, [1, 2, 3])


def test_rejects_tokenizer_with_image_as_one_token(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    other = type(tok).from_pretrained(tmp_path)
    other.add_tokens(["<image>"])
    with pytest.raises(ValueError, match=r"splits '<image>' into 1 ids.*exactly three"):
        build_prompt_ids(other, QUESTION, image_codes=CODES, codebook_size=CODEBOOK)


def test_rejects_prompt_longer_than_context(tok):
    n = len(_enc(tok, UPSTREAM_WITH_INPUT.format(instruction=QUESTION, input=REPORT)))
    with pytest.raises(ValueError, match=rf"prompt is {n} tokens but the model's context is 50"):
        build_prompt_ids(tok, QUESTION, input_text=REPORT, max_length=50)
    with pytest.raises(ValueError, match=rf"prompt is {n} tokens but the model's context is {n}"):
        build_prompt_ids(tok, QUESTION, input_text=REPORT, max_length=n)  # no room left for an answer
    assert len(build_prompt_ids(tok, QUESTION, input_text=REPORT, max_length=n + 1)) == n


def test_rejects_mixed_or_empty_requests(tok):
    with pytest.raises(ValueError, match="either an image or a text input, not both"):
        build_prompt_ids(tok, QUESTION, input_text=REPORT, image_codes=CODES, codebook_size=CODEBOOK)
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="instruction is empty"):
            build_prompt_ids(tok, empty)
    with pytest.raises(ValueError, match="exactly one '<image>' in the prompt, found 2"):
        build_prompt_ids(tok, "Describe <image> please", image_codes=CODES, codebook_size=CODEBOOK)


# ---------------------------------------------------------------- instruction lists


def test_instruction_lists_match_upstream():
    r2c, c2r = protocol.REPORT_TO_CXR_INSTRUCTIONS, protocol.CXR_TO_REPORT_INSTRUCTIONS
    assert len(r2c) == len(set(r2c)) == 10 and len(c2r) == len(set(c2r)) == 10
    assert r2c[0] == (
        "Generate a chest X-ray image that corresponds to the entered free-text radiology reports for the "
        "chest X-ray image."
    )
    assert r2c[-1] == (
        "Utilize the entered free-text radiology reports for the chest X-ray image to produce a corresponding "
        "chest X-ray image."
    )
    assert c2r[0] == "Generate free-text radiology reports for the entered chest X-ray images."
    assert (
        c2r[-1]
        == "Utilize the entered chest X-ray images to generate comprehensive free-text radiology reports."
    )
    assert set(protocol.TASKS) == {"report", "draw", "vqa", "instruct"}

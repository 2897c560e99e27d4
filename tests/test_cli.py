"""`python -m llmcxr_app` as a user runs it (subprocesses), on the tiny models of conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from llmcxr_app.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def weight_flags(location) -> list[str]:
    return [
        "--llm",
        location.llm,
        "--vqgan-config",
        location.vqgan_config,
        "--vqgan-ckpt",
        location.vqgan_ckpt,
        "--device",
        "cpu",
        "--quantization",
        "fp32",
    ]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCXR_")}
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    return subprocess.run(
        [sys.executable, "-m", "llmcxr_app", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_round_trip_draw_png_describe(tiny_location, tmp_path, capsys):
    out = tmp_path / "synthetic.png"
    flags = weight_flags(tiny_location)
    drawn = cli(
        "draw",
        "Moderate right pleural effusion.",
        "--out",
        str(out),
        "--seed",
        "5",
        "--json",
        "--self-check",
        *flags,
    )
    assert drawn.returncode == 0, drawn.stderr
    payload = json.loads(drawn.stdout)
    assert payload["task"] == "draw" and payload["out"] == str(out)
    assert len(payload["image_codes"]) == 256 and all(0 <= c < 32 for c in payload["image_codes"])
    assert len(payload["probs"]) == 256
    assert payload["provenance"]["seed"] == 5 and payload["timings"]["tokens"] == 256
    check = payload["provenance"]["self_check"]  # the tiny model read its drawing back
    assert check["asked"] == ["effusion"] and isinstance(check["read_back"], str)
    assert check["agrees"] == (check["seen"] == ["effusion"] and not check["attributes_differing"])
    with Image.open(out) as im:
        assert im.size == (32, 32) and "llmcxr:provenance" in im.text
        assert json.loads(im.text["llmcxr:provenance"])["self_check"] == check

    # The PNG goes back in (in-process, to keep the suite fast: the subprocess above covers the entry point).
    assert main(["describe", str(out), "--json", "--max-new-tokens", "5", "--temperature", "0", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "report" and isinstance(report["text"], str)
    assert len(report["input_codes"]) == 256 and report["image_codes"] is None
    assert report["timings"]["tokens"] <= 5


def test_draw_guidance_flags_reach_the_drawing(tiny_location, tmp_path, capsys):
    def drawn(*extra: str) -> dict:
        args = ["draw", "Large left effusion.", "--out", str(tmp_path / "x.png"), "--seed", "2", "--json"]
        assert main([*args, *extra, *weight_flags(tiny_location)]) == 0
        return json.loads(capsys.readouterr().out)["provenance"]

    default = drawn()  # the tiny checkpoint declares no guidance: unguided
    assert default["sampling"]["guidance"] == 1.0 and default["guided_away_from"] is None
    swapped = drawn("--guidance", "3")
    assert swapped["sampling"]["guidance"] == 3.0 and swapped["guided_away_from"] == "swapped"
    normal = drawn("--guidance", "3", "--guide-away-from", "normal")
    assert normal["guided_away_from"] == "normal" and "No pleural effusion" in normal["guidance_negative"]
    for text, said in [
        ("Large left effusion.", "Drawn with guidance 3 (away from the other side, size and zone)."),
        ("Cardiomegaly.", "Drawn unguided (no side, size or zone stated to guide by)."),
    ]:
        args = ["draw", text, "--out", str(tmp_path / "y.png"), "--seed", "2", "--guidance", "3"]
        assert main([*args, *weight_flags(tiny_location)]) == 0
        assert said in capsys.readouterr().out.splitlines()


def test_streamed_text_equals_json_text(tiny_location, capsys):
    args = ["ask", "--no-image", "What is deep learning?", "--max-new-tokens", "8", "--seed", "3"]
    assert main([*args, *weight_flags(tiny_location)]) == 0
    streamed = capsys.readouterr().out
    assert main([*args, "--json", *weight_flags(tiny_location)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["task"] == "instruct" and streamed == payload["text"] + "\n"


@pytest.mark.parametrize(
    "args",
    [
        ["describe", "does-not-exist.png"],
        ["draw", "   ", "--out", "x.png"],
        ["draw", "Lungs are clear."],  # nowhere to put the image
        ["ask", "only-a-question"],  # IMAGE QUESTION needs two, or --no-image
        ["draw", "Lungs are clear.", "--out", "x.png", "--top-p", "0"],
        ["draw", "Lungs are clear.", "--out", "x.png", "--guidance", "9"],
        ["draw", "Lungs are clear.", "--out", "x.png", "--guide-away-from", "mirror"],
        [],
    ],
)
def test_bad_input_exits_2_with_one_line(args):
    run = cli(*args)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_bad_input_after_loading(tiny_location, tmp_path, capsys):
    not_an_image = tmp_path / "scan.png"
    not_an_image.write_bytes(b"hello, this is text")
    assert main(["describe", str(not_an_image), *weight_flags(tiny_location)]) == 2
    too_long = "Moderate right pleural effusion with compressive atelectasis. " * 40
    assert main(["draw", too_long, "--json", *weight_flags(tiny_location)]) == 2
    assert (
        main(["ask", "--no-image", "hi", "--llm", str(tmp_path / "missing")]) == 2
    )  # incomplete weight flags
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("llmcxr_app: error:") for line in err)
    assert "context" in err[1] and "words" in err[1]


def test_several_images_in_one_start_with_jsonl(tiny_location, tmp_path, capsys):
    """describe/ask take several images (the model loads once); --jsonl gives one object per image, in order,
    and an unreadable one is reported by position while the others are answered (exit status 2)."""
    good = [tmp_path / f"film{k}.png" for k in range(2)]
    for k, path in enumerate(good):
        Image.new("L", (40 + 8 * k, 40), 60 + 90 * k).save(path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    flags = ["--max-new-tokens", "4", "--temperature", "0", *weight_flags(tiny_location)]
    assert main(["describe", str(good[0]), str(bad), str(good[1]), "--jsonl", *flags]) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["input"] for line in lines] == [str(good[0]), str(bad), str(good[1])]
    assert lines[1].keys() == {"input", "error"} and "image" in lines[1]["error"].lower()
    assert all(line["task"] == "report" and len(line["input_codes"]) == 256 for line in (lines[0], lines[2]))
    assert lines[0]["input_codes"] != lines[2]["input_codes"]  # each image was read, not the first twice
    assert captured.err.strip().startswith("llmcxr_app: error: image 2 of 3:")

    # The same answers one at a time, as --json: a batch answers each image as a single call would.
    for path, line in ((good[0], lines[0]), (good[1], lines[2])):
        assert main(["describe", str(path), "--json", *flags]) == 0
        assert json.loads(capsys.readouterr().out)["input_codes"] == line["input_codes"]

    question = "Is there a pleural effusion?"
    assert main(["ask", str(good[0]), str(good[1]), question, *flags]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"== {good[0]} ==\n") and f"\n== {good[1]} ==\n" in text
    assert main(["describe", str(good[0]), str(good[1]), "--json", *flags]) == 2  # --json is one object
    assert "--jsonl" in capsys.readouterr().err

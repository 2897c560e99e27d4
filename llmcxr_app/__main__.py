"""Command line: `python -m llmcxr_app {describe,ask,draw} ...` (research use only; not a medical device).

Arguments and file names are checked before the model loads, so a typo costs no loading time. Bad input (missing or unreadable
file, empty text, text too long for the context, incomplete weight flags) exits with status 2 and one line
on stderr; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from llmcxr_app import redact
from llmcxr_app.cli_args import add_weight_args, settings_from_args
from llmcxr_app.config import GUIDE_AWAY_FROM, SamplingConfig

if TYPE_CHECKING:  # annotations only: the model code loads after the input is checked
    from llmcxr_app.studio.facade import Studio
    from llmcxr_app.studio.types import PreparedImage, Result, Update

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = "LLM-CXR Studio from the command line: chest X-ray -> report, questions, report -> X-ray."
EPILOG = """examples:
  python -m llmcxr_app describe cxr.png
  python -m llmcxr_app describe a.png b.dcm c.jpg --jsonl > reports.jsonl
  python -m llmcxr_app ask a.png b.dcm "Is there a pleural effusion?" --jsonl
  python -m llmcxr_app ask cxr.dcm "Is there a pleural effusion?"
  python -m llmcxr_app ask --no-image "What is a pneumothorax?"
  python -m llmcxr_app draw "Moderate right pleural effusion." --out synthetic.png --seed 7 --self-check
  echo "No acute findings." | python -m llmcxr_app draw - --json

Without weight flags the app's default weights are used (see the 'weights' flags). Text streams to stdout;
--json prints one JSON object instead. describe and ask take several images in one start (the model loads
once); --jsonl then prints one JSON object per image, in order, each naming its input. Research use only: not
for diagnosis."""


class UserError(Exception):
    """Bad command-line input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    s = SamplingConfig()
    g = p.add_argument_group("sampling")
    g.add_argument("--seed", type=int, help="random seed (default: a fresh one, reported with --json)")
    g.add_argument(
        "--temperature", type=float, default=s.temperature, help="0 = greedy (default %(default)s)"
    )
    g.add_argument("--top-p", type=float, default=s.top_p, help="nucleus mass, 1 = off (default %(default)s)")
    g.add_argument("--top-k", type=int, default=s.top_k, help="0 = off (default %(default)s)")
    g.add_argument(
        "--guidance",
        type=float,
        default=s.guidance,
        help="draw: guidance scale, 1 = off (default: the model's own; 2 for the demo weights)",
    )
    g.add_argument(
        "--guide-away-from",
        choices=GUIDE_AWAY_FROM,
        default=s.guide_away_from,
        help="draw: what guidance avoids: sides = each half of the image drawn from the findings on its side, "
        "away from the other side's (a text with none on one side, or only a small effusion: swapped); "
        "swapped = the same findings with side, size and zone swapped (a small effusion left out); "
        "normal = a normal chest (default %(default)s)",
    )
    g.add_argument(
        "--max-new-tokens", type=int, default=s.max_new_tokens, help="text answer limit (default %(default)s)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json", action="store_true", help="print one JSON object (text, codes, provenance, timings)"
    )
    out.add_argument(
        "--jsonl", action="store_true", help="one JSON object per line per input (for several images)"
    )
    p.add_argument("--verbose", action="store_true", help="show library warnings and tracebacks")
    add_weight_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m llmcxr_app",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser(
        "describe", help="write a report for a chest X-ray", description="CXR -> free-text report."
    )
    p.add_argument("image", nargs="+", metavar="IMAGE", help="PNG, JPEG, TIFF or DICOM file(s)")
    _add_common(p)
    p = sub.add_parser(
        "ask",
        help="ask a question about a chest X-ray (or without one: --no-image)",
        usage="python -m llmcxr_app ask IMAGE [IMAGE ...] QUESTION [options]\n"
        "       python -m llmcxr_app ask --no-image QUESTION [options]",
        description="With IMAGE: visual question answering about that X-ray. With --no-image: the question is "
        "a plain instruction to the language model, without any image.",
    )
    p.add_argument("positional", nargs="+", metavar="IMAGE QUESTION", help="image file(s), then the question")
    p.add_argument("--no-image", action="store_true", help="ask without an image (give only QUESTION)")
    p.add_argument(
        "--verbatim",
        action="store_true",
        help="ask QUESTION as written, even when the checkpoint is asked the template question it reads as",
    )
    _add_common(p)
    p = sub.add_parser(
        "draw", help="draw a synthetic chest X-ray from findings", description="Report -> CXR."
    )
    p.add_argument("findings", metavar="FINDINGS", help="report text ('-' reads it from stdin)")
    p.add_argument("--out", type=Path, metavar="PNG", help="where to write the PNG (marked SYNTHETIC)")
    p.add_argument(
        "--self-check",
        action="store_true",
        help="read the drawing back with the model and compare that report with FINDINGS (studio/selfcheck.py)",
    )
    p.add_argument(
        "--verbatim",
        action="store_true",
        help="give the model FINDINGS as written, even when its checkpoint draws from the labeler's reading",
    )
    _add_common(p)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_inputs(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """(image paths, question/findings or None), failing fast before any model loads."""
    images, text = [], None
    if args.command == "describe":
        images = list(args.image)
    elif args.command == "ask":
        wanted = len(args.positional) == 1 if args.no_image else len(args.positional) >= 2
        if not wanted:
            form = "ask --no-image QUESTION" if args.no_image else "ask IMAGE [IMAGE ...] QUESTION"
            raise UserError(f"expected {form}; got {len(args.positional)} arguments.")
        images, text = ([] if args.no_image else args.positional[:-1]), args.positional[-1]
        if not text.strip():
            raise UserError("The question is empty: please type a question.")
    else:
        text = _check_draw(args)
    if len(images) > 1 and args.json:
        raise UserError("--json prints one object: use --jsonl for several images.")
    for k, image in enumerate(images, 1):
        if not Path(image).is_file():
            # The file name may identify a patient: it is not repeated, only its position.
            raise UserError(f"Image {k} of {len(images)} does not exist (or is not a file).")
    return images, text


def _check_draw(args: argparse.Namespace) -> str:
    text = sys.stdin.read() if args.findings == "-" else args.findings
    if not text.strip():
        raise UserError("The findings are empty: please give the report text to draw from.")
    if args.out is None and not (args.json or args.jsonl):
        raise UserError("draw needs --out PATH for the PNG (or --json for the codes only).")
    if args.out is not None and not args.out.parent.is_dir():
        raise UserError("The folder for --out does not exist.")
    return text


def _quiet_libraries() -> None:
    import warnings

    warnings.simplefilter("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    """Check the input, load the model once, answer each input, print (stdout); exit status.

    With several images a file that cannot be read is reported (stderr, and as an "error" object with
    --jsonl) and the others are still answered; the exit status is then 2.
    """
    images, text = _check_inputs(args)
    sampling = SamplingConfig(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        guidance=args.guidance,
        guide_away_from=args.guide_away_from,
    )
    settings = settings_from_args(args)
    if not args.verbose:
        _quiet_libraries()
    # Imported here, not at the top: the input is checked before the model code (and torch) loads.
    from llmcxr_app.studio.build import load_studio

    studio = load_studio(settings)
    if args.command == "draw":
        return _draw(studio, args, text, sampling)
    failed = 0
    for k, image in enumerate(images or [None]):
        try:
            _answer(studio, args, image, text, sampling, header=_header(images, k, args))
        except (ValueError, OSError) as exc:
            if len(images) <= 1:
                raise
            failed += 1
            print(f"llmcxr_app: error: image {k + 1} of {len(images)}: {_one_line(exc)}", file=sys.stderr)
            if args.jsonl:
                print(json.dumps({"input": image, "error": _one_line(exc)}, ensure_ascii=False))
    return EXIT_BAD_INPUT if failed else 0


def _header(images: list[str], k: int, args: argparse.Namespace) -> str:
    """The line before each streamed answer when several images are answered as text."""
    return f"== {images[k]} ==\n" if len(images) > 1 and not (args.json or args.jsonl) else ""


def _answer(studio: Studio, args, image: str | None, text: str | None, sampling, header: str) -> None:
    """describe or ask for one image (or none): stream or print its JSON object."""
    prepared = _prepare(studio, image)
    sys.stdout.write(header)
    if args.command == "describe":
        updates = studio.describe(prepared, sampling=sampling)
    else:
        updates = studio.ask(text, prepared, sampling=sampling, verbatim=args.verbatim)
    result = _stream_to_stdout(updates, args.command, args.json or args.jsonl, studio.info.grid)
    if args.json or args.jsonl:
        payload = {"input": image} if args.jsonl else {}
        payload.update(_payload(result, prepared, None))
        print(json.dumps(payload, ensure_ascii=False, default=str))
    else:
        sys.stdout.write("\n")
        if result.provenance.get("asked"):
            turned = " (the answer is its opposite)" if result.provenance.get("opposite") else ""
            print(f"(asked as the template question: {result.provenance['asked']}){turned}", file=sys.stderr)


def _draw(studio: Studio, args: argparse.Namespace, text: str, sampling: SamplingConfig) -> int:
    """Draw from the findings, optionally read the drawing back, write the PNG and print."""
    from llmcxr_app.imaging.exports import save_png
    from llmcxr_app.studio import guidance

    updates = studio.draw(text, sampling=sampling, preview_every=0, verbatim=args.verbatim)
    result = _stream_to_stdout(updates, "draw", args.json or args.jsonl, studio.info.grid)
    check = None
    if args.self_check:
        from llmcxr_app.studio.selfcheck import check as self_check

        check = self_check(studio, text, result)
        result.provenance["self_check"] = check.as_dict()  # also in the PNG's metadata
    out = save_png(result.image, args.out, result.provenance) if args.out else None
    if args.json or args.jsonl:
        print(json.dumps(_payload(result, None, out), ensure_ascii=False, default=str))
    elif out is not None:
        print(f"Wrote {out} (seed {result.provenance['seed']}; marked SYNTHETIC).")
        print(f"Findings read as: {result.provenance['read_as']} (the model read {_model_read(result)}).")
        guided = guidance.describe(result.provenance)
        if guided:
            guided_away = result.provenance.get("guided_away_from")  # else: "unguided (why)"
            print(f"Drawn with {guided}." if guided_away else f"Drawn {guided}.")
        if check is not None:
            from llmcxr_app.studio.selfcheck import verdict

            print(verdict([check]))
    return 0


def _model_read(result: Result) -> str:
    """How the model received the findings (Studio.draw's provenance)."""
    if result.provenance.get("draw_prompt") == "canonical":
        return "that reading as its template report"
    return "your text as written"


def _prepare(studio: Studio, image_path: str | None) -> PreparedImage | None:
    """The image decoded and prepared for the Studio (None without an image); a large image's model input
    comes from its full-size decode."""
    from llmcxr_app.imaging import images as imaging

    if image_path is None:
        return None
    loaded = imaging.load_image(image_path, model_sizes=(studio.info.resolution,))
    return studio.prepare(loaded)


def _stream_to_stdout(updates: Iterable[Update], command: str, as_json: bool, grid: int) -> Result:
    """Print text answers as they grow (not with --json); draw shows its rows on a terminal's stderr.

    `grid`: image rows (of codes) the drawing has. Returns the final result.
    """
    result, shown = None, ""
    progress = command == "draw" and not as_json and sys.stderr.isatty()
    for update in updates:
        result = update.result or result
        if command != "draw" and not as_json and update.text != shown:
            sys.stdout.write(update.text[len(shown) :])
            sys.stdout.flush()
            shown = update.text
        if progress:
            sys.stderr.write(f"\rdrawing: row {update.rows_done}/{grid}")
    if progress:
        sys.stderr.write("\n")
    assert result is not None
    return result


def _payload(result: Result, prepared: PreparedImage | None, out: Path | None) -> dict[str, Any]:
    """The --json object: the answer, its codes and probabilities, the input's codes and crop, provenance."""
    from llmcxr_app.imaging.exports import DISCLAIMER

    return {
        "task": result.task,
        "text": result.text,
        "image_codes": result.codes,
        "probs": result.probs,
        "input_codes": prepared.codes if prepared is not None else None,
        "crop_box": list(prepared.crop_box) if prepared is not None else None,
        "out": str(out) if out is not None else None,
        "provenance": result.provenance,
        "timings": result.timings,
        "disclaimer": DISCLAIMER,
    }


def main(argv: list[str] | None = None) -> int:
    redact.install()  # header values of the image never reach a warning or log line, --verbose included
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("llmcxr_app: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UserError, ValueError, OSError) as exc:
        # StudioInputError, ImageLoadError, WeightsError and SamplingConfig's checks are ValueErrors.
        if args.verbose:
            raise
        print(f"llmcxr_app: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

"""Space readiness: README front matter, requirement pins, the ZeroGPU decorator, docs/DEPLOY.md's commands."""

from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import re
import shlex
import subprocess
import sys
import types

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from llmcxr_app import config
from llmcxr_app.config import REPO_ROOT
from llmcxr_app.loading import hub
from llmcxr_app.ui import zerogpu

# Colours the Hub accepts for a Space card gradient.
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
ZEROGPU_TORCH = (
    Version("2.8"),
    Version("2.11.99"),
)  # ZeroGPU's torch list when checked (docs/SERVING.md)
DOC_VARS = {"MODEL_REPO": "your-name/llm-cxr-nf4", "SPACE": "your-name/llm-cxr-studio", "OUT": "converted/x"}


def front_matter() -> dict:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "the Space configuration must be the very first thing in README.md"
    block, rest = text[4:].split("\n---\n", 1)
    assert rest.lstrip().startswith("# LLM-CXR Studio")
    return yaml.safe_load(block)


def pins(name: str) -> dict[str, Requirement]:
    reqs = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[req.name.lower().replace("_", "-")] = req
    return reqs


def pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} is not pinned"
    return spec.version


def test_front_matter_configures_a_gradio_space():
    fm = front_matter()
    assert fm["title"] == "LLM-CXR Studio" and fm["sdk"] == "gradio"
    assert fm["app_file"] == "app.py" and (REPO_ROOT / "app.py").is_file()
    assert fm["colorFrom"] in SPACE_COLORS and fm["colorTo"] in SPACE_COLORS and fm["emoji"]
    assert isinstance(fm["models"], list) and fm["pinned"] is False and fm["license"]
    assert isinstance(fm["sdk_version"], str) and isinstance(
        fm["python_version"], str
    )  # quoted: "3.10" != 3.1
    assert 0 < len(fm["short_description"]) <= 60


def test_sdk_version_is_the_tested_gradio():
    fm, reqs = front_matter(), pins("requirements.txt")
    assert fm["sdk_version"] == pinned_version(reqs["gradio"]) == md.version("gradio")


def test_python_version_satisfies_every_pinned_package():
    """A Space installs the pins on python_version: each must accept it (transformers 5.23 needs 3.11)."""
    python = Version(front_matter()["python_version"] + ".0")
    for name, req in pins("requirements.txt").items():
        if req.specifier and next(iter(req.specifier)).operator == "==":
            requires = md.metadata(name).get("Requires-Python")
            assert requires is None or Requirement(f"x{requires}").specifier.contains(python), (
                name,
                requires,
            )


def test_zerogpu_requirements_differ_only_in_torch():
    base, zero = pins("requirements.txt"), pins("requirements-zerogpu.txt")
    assert base.keys() == zero.keys()
    assert {k: str(v) for k, v in base.items() if k != "torch"} == {
        k: str(v) for k, v in zero.items() if k != "torch"
    }
    torch = Version(pinned_version(zero["torch"]))
    assert ZEROGPU_TORCH[0] <= torch <= ZEROGPU_TORCH[1]
    for name in ("transformers", "bitsandbytes", "accelerate"):  # their own torch bounds accept it
        for dep in map(Requirement, md.requires(name) or []):
            if dep.name == "torch" and dep.marker is None:
                assert dep.specifier.contains(torch), (name, str(dep))


# ---------------------------------------------------------------- ZeroGPU


def test_zerogpu_module_imports_nothing_off_zerogpu():
    code = (
        "import sys, inspect; import llmcxr_app.ui.zerogpu as z\n"
        "def g(n):\n    yield from range(n)\n"
        "assert z.gpu(30)(g) is g and not z.on_zerogpu()\n"
        "print(sorted(m for m in ('spaces', 'torch', 'gradio') if m in sys.modules))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "SPACES_ZERO_GPU": "false"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "value, on", [("true", True), ("True", True), ("1", True), ("", False), ("false", False)]
)
def test_on_zerogpu_reads_spaces_variable(monkeypatch, value, on):
    monkeypatch.setenv(zerogpu.ENV, value)
    assert zerogpu.on_zerogpu() is on


def test_zerogpu_decorator_passes_duration_and_keeps_streaming(monkeypatch):
    """On ZeroGPU gpu() is spaces.GPU(duration=...); a generator wrapped the way spaces wraps one streams."""
    import functools

    calls = []

    def GPU(
        task=None, *, duration=None
    ):  # the stub of spaces.GPU: records, wraps like spaces' generator path
        def wrap(fn):
            calls.append((fn, duration))

            @functools.wraps(fn)
            def handler(*args, **kwargs):
                yield from fn(*args, **kwargs)

            return handler

        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    monkeypatch.setenv(zerogpu.ENV, "true")
    produced = []

    def answer(n):
        for i in range(n):
            produced.append(i)
            yield f"piece {i}"

    wrapped = zerogpu.gpu(45)(answer)
    assert calls == [(answer, 45)] and inspect.isgeneratorfunction(wrapped)  # gradio streams generator fns
    stream = wrapped(3)
    assert next(stream) == "piece 0" and produced == [0]  # the first piece arrives before the rest is made
    assert list(stream) == ["piece 1", "piece 2"]

    def seconds(n):
        return 10 * n

    zerogpu.gpu(seconds)(answer)
    assert calls[-1] == (answer, seconds)  # a dynamic duration goes through unchanged


# ---------------------------------------------------------------- app and UI on a Space


def _name(call: ast.Call) -> str:
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def _calls(path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n) == name]


def test_examples_are_not_cached_at_start_up():
    """Gradio caches examples on Spaces by default, which would run the model before anyone asks."""
    ui_files = sorted((REPO_ROOT / "llmcxr_app" / "ui").glob("*.py"))
    found = [
        (f, c)
        for f in ui_files
        for name in ("Examples", "ChatInterface", "Interface")
        for c in _calls(f, name)
    ]
    assert found, "no examples found in llmcxr_app/ui/"
    for file, call in found:
        kw = {k.arg: k.value for k in call.keywords}
        if _name(call) != "Examples" and "examples" not in kw:
            continue
        assert isinstance(kw.get("cache_examples"), ast.Constant) and kw["cache_examples"].value is False, (
            f"{file.name}:{call.lineno}: pass cache_examples=False"
        )


def test_app_imports_zerogpu_before_torch():
    """spaces must patch torch before CUDA is touched, so app.py's first project import is zerogpu."""
    tree = ast.parse((REPO_ROOT / "app.py").read_text(encoding="utf-8"))
    mods = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods += [f"{node.module}.{a.name}" for a in node.names]
    heavy = [
        m for m in mods if m.split(".")[0] in ("llmcxr_app", "torch", "transformers", "gradio", "spaces")
    ]
    assert heavy and heavy[0] in ("llmcxr_app.ui.zerogpu", "llmcxr_app.ui.zerogpu.gpu"), heavy[:3]


def test_app_binds_what_the_space_asks_for(monkeypatch):
    """Spaces set GRADIO_SERVER_NAME=0.0.0.0; an explicit 127.0.0.1 would make the Space unreachable."""
    import app

    seen = {}

    class Launched:
        def launch(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setattr(app, "load_studio", lambda settings, **kw: object())  # app.py loads through it
    monkeypatch.setattr(app.ui, "build", lambda studio, server: Launched())
    app.main([])
    assert seen["server_name"] == "0.0.0.0" and seen["server_port"] == 7860
    assert seen.get("share", False) is False


# ---------------------------------------------------------------- docs/DEPLOY.md


def deploy_commands() -> list[list[str]]:
    """Every command of the bash blocks in docs/DEPLOY.md, split like a shell, with its variables filled in."""
    text = (REPO_ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$(\w+)", lambda m: DOC_VARS.get(m.group(1), m.group(0)), line.split(" #", 1)[0])
            if line.strip() and not re.match(r"^\s*(\w+=|export )", line):
                commands.append(shlex.split(line))
    return commands


def test_deploy_doc_convert_commands_parse():
    from llmcxr_app.loading.convert import build_parser

    converts = [c[3:] for c in deploy_commands() if c[:3] == ["python", "-m", "llmcxr_app.convert"]]
    assert {c[0] for c in converts} == {"llm", "vqgan"}
    for argv in converts:
        args = build_parser().parse_args(argv)
        if args.what == "vqgan":  # the names it writes are the ones the variables below point at
            assert args.dst.endswith("/vqgan") and args.name == "vqgan"


def test_deploy_doc_hf_commands_exist_with_those_flags():
    from click.testing import CliRunner
    from huggingface_hub.cli.hf import app

    hf = [c[1:] for c in deploy_commands() if c[0] == "hf"]
    assert {tuple(c[:2]) for c in hf} >= {("repos", "create"), ("upload", DOC_VARS["MODEL_REPO"])}
    for argv in hf:
        # --help is eager: it exits 0 once the subcommand and every option before it parsed, running nothing
        result = CliRunner().invoke(app, [*argv, "--help"])
        assert result.exit_code == 0, (argv, result.output[-300:])


def test_deploy_doc_variables_are_the_apps():
    text = (REPO_ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    ours = {v for k, v in vars(config).items() if k.startswith("ENV_")}
    assert set(re.findall(r"\bLLMCXR_[A-Z_]+", text)) <= ours
    specs = {v for c in deploy_commands() for a in c if "=" in a for k, v in [a.split("=", 1)] if k in ours}
    assert {hub.parse_hub_spec(s).path for s in specs if s.startswith("hf://")} == {
        "vqgan/vqgan.yaml",
        "vqgan/vqgan.safetensors",
    }
    assert all(hub.is_hub_spec(s) for s in specs if s not in ("auto",))


def pickling_spaces(calls: list) -> types.SimpleNamespace:
    """A stand-in for `spaces` that imposes ZeroGPU's process boundary: arguments, results and every yielded
    value go through pickle, as they do between Gradio's process and the GPU worker."""
    import functools
    import pickle

    def through(value):
        return pickle.loads(pickle.dumps(value))

    def GPU(task=None, *, duration=None):
        def wrap(fn):
            calls.append(("decorated", duration))
            if inspect.isgeneratorfunction(fn):

                @functools.wraps(fn)
                def stream(*args, **kwargs):
                    calls.append(("stream", fn.__name__))
                    args, kwargs = through((args, kwargs))
                    for item in fn(*args, **kwargs):
                        yield through(item)
                    calls.append(("finished", getattr(item, "result", None) is not None))

                return stream

            @functools.wraps(fn)
            def call(*args, **kwargs):
                calls.append(("call", fn.__name__))
                args, kwargs = through((args, kwargs))
                return through(fn(*args, **kwargs))

            return call

        return wrap

    return types.SimpleNamespace(GPU=GPU)


def test_chat_runs_its_model_calls_across_a_zerogpu_boundary(monkeypatch, tiny_location, tmp_path):
    """Upload -> report, follow-up question, drawing: every model call goes through zerogpu.gpu with
    picklable arguments and updates, and the conversation still completes."""
    from ui_harness import tiny_studio, write_examples

    from llmcxr_app.config import ServerConfig
    from llmcxr_app.ui.chat import ChatApp

    calls: list = []
    monkeypatch.setitem(sys.modules, "spaces", pickling_spaces(calls))
    monkeypatch.setenv(zerogpu.ENV, "true")
    app = ChatApp(tiny_studio(tiny_location), ServerConfig())
    assert [c for c in calls if c[0] == "decorated"], "ChatApp decorates no model call with zerogpu.gpu"
    png = write_examples(tmp_path / "examples")["phantom_a"]
    session = None
    for message, mode in (
        ({"text": "", "files": [str(png)]}, "Auto"),
        ("Is the heart enlarged?", "Ask"),
        ("Small left pleural effusion.", "Draw"),
    ):
        *_, last = app.chat(message, mode, 0.0, 1.0, 8, "1", 1, session)
        session = last[1]
    kinds = [c[0] for c in calls]
    # prepare; report, answer, drawing, and the drawing's self-check read-back
    assert kinds.count("call") >= 1 and kinds.count("stream") >= 4
    assert session.current is not None
    shown = [str(m["content"]) for m in session.history if m["role"] == "assistant"]
    assert [c for c in calls if c[0] == "finished"] == [("finished", True)] * 4  # each ended with its Result
    assert not any("interrupted by an error" in t for t in shown)

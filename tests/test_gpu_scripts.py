"""scripts/gpu_wheels.sh, gpu_check.sh and gpu_train.sh on this CPU machine: the wheel set is complete and
installs offline into an empty folder, the slimmed gradio in it serves the app, the check runs its non-CUDA
steps, skipping the CUDA ones with a line that says so, and the trainer runs recipes side by side."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
LOCAL = f"{sys.version_info.major}.{sys.version_info.minor}"


def _names(file: str) -> set[str]:
    lines = (SCRIPTS / file).read_text().splitlines()
    return {canonicalize_name(re.split(r"[=<>~ ]", ln, maxsplit=1)[0]) for ln in lines if ln and ln[0] != "#"}


def _requirement_names(path: Path) -> set[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    return {canonicalize_name(Requirement(ln).name) for ln in lines if ln and not ln.startswith("-")}


def _download(folder: Path, python_version: str) -> dict:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHON_VERSION": python_version}
    p = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_wheels.sh"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode != 0 and re.search(
        r"No matching distribution|connection|Network|resolve", p.stderr, re.I
    ):
        pytest.skip(f"no package index reachable: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((folder / "wheels.json").read_text())


def test_every_runtime_requirement_is_in_the_image_or_the_wheel_set():
    """A package the app imports but the device image lacks must be fetched, or the app step fails there (it
    did once: spaCy and negspacy were added to requirements.txt and not to the wheel set)."""
    runtime = _requirement_names(ROOT / "requirements.txt")
    wheel_set = _names("gpu_requirements.txt") | _names("gpu_wheel_deps.txt")
    zerogpu_only = {"spaces"}  # imported by ui/zerogpu.py on a ZeroGPU Space only, never on the device image
    missing = runtime - _names("gpu_image_packages.txt") - wheel_set - zerogpu_only
    assert not missing, f"add to scripts/gpu_requirements.txt: {sorted(missing)}"


@pytest.fixture(scope="module")
def wheels_312(tmp_path_factory) -> tuple[Path, dict]:
    """The set for the device image (CPython 3.12 on x86-64 Linux), as gpu_wheels.sh downloads it."""
    folder = tmp_path_factory.mktemp("wheels312")
    return folder, _download(folder, "3.12")


@pytest.mark.slow
def test_the_wheel_set_for_the_image_is_complete_and_small(wheels_312):
    folder, manifest = wheels_312
    files = sorted(p.name for p in folder.glob("*/*.whl"))
    assert files == sorted(w["file"] for w in manifest["wheels"])
    # Two parts, each small enough for one device call beside the repository; spaCy's stack is the nlp part.
    assert {w["part"] for w in manifest["wheels"]} == {"app", "nlp"}
    for name, size in manifest["part_bytes"].items():
        assert size == sum(
            (folder / name / w["file"]).stat().st_size for w in manifest["wheels"] if w["part"] == name
        )
        assert size < 60e6, name
    assert {w["file"].split("-")[0] for w in manifest["wheels"] if w["part"] == "nlp"} >= {
        "spacy",
        "negspacy",
    }
    assert manifest["total_bytes"] == sum(manifest["part_bytes"].values())
    # One wheel per pinned name, none of them torch or CUDA libraries.
    have = {canonicalize_name(f.split("-")[0]) for f in files}
    assert have == _names("gpu_requirements.txt") | _names("gpu_wheel_deps.txt")
    assert not [f for f in files if re.match(r"(torch|nvidia)", f)]
    # Closed: every requirement of every wheel (for Python 3.12 on Linux) is in the set or in the image.
    image = _names("gpu_image_packages.txt")
    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3"}
    env |= {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    unmet = []
    for f in files:
        with zipfile.ZipFile(next(folder.glob(f"*/{f}"))) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        for line in meta.splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(
                    req.name
                ) not in have | image:
                    unmet.append(f"{f}: {req}")
    assert not unmet, unmet
    # The slimmed bitsandbytes keeps what CUDA 13 and the CPU load, and its RECORD lists only what it holds.
    (bnb,) = folder.glob("app/bitsandbytes-*.whl")
    with zipfile.ZipFile(bnb) as z:
        libs = sorted(n.rsplit("/", 1)[1] for n in z.namelist() if n.endswith(".so"))
        record = z.read(next(n for n in z.namelist() if n.endswith("RECORD"))).decode()
        assert libs == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so"]
        assert {ln.split(",")[0] for ln in record.splitlines() if ln} == set(z.namelist())


@pytest.fixture(scope="module")
def local_install(tmp_path_factory) -> Path:
    """The same set downloaded for this interpreter, installed offline into an empty folder."""
    folder, target = tmp_path_factory.mktemp("wheels-local"), tmp_path_factory.mktemp("site")
    _download(folder, LOCAL)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        str(folder),
        "--no-deps",
    ]
    wheels = sorted(folder.glob("*/*.whl"))
    cmd += ["--disable-pip-version-check", "--target", str(target), *map(str, wheels)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return target


@pytest.mark.slow
def test_the_wheel_set_installs_offline_and_the_slim_gradio_serves_the_app(local_install, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(local_install)}
    code = "import bitsandbytes, fastapi, gradio, gradio_client, negspacy, pydicom, pylibjpeg, spacy\n"
    code += "print(gradio.__file__)"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith(str(local_install)), p.stderr[-3000:]
    assert not (
        local_install / "gradio" / "templates" / "node"
    ).exists()  # the slimmed gradio is the one used
    # The app step of gpu_check.sh, on this CPU, with the packages from that folder: a report and a drawing.
    out = tmp_path / "app.json"
    cmd = [sys.executable, str(SCRIPTS / "gpu_app_check.py"), "--device", "cpu", "--json", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    report = json.loads(out.read_text())
    assert p.returncode == 0 and report["ok"], (report, p.stderr[-3000:])
    assert report["describe"]["task"] == "report" and report["describe"]["answer"]
    assert report["draw"]["task"] == "draw" and report["draw"]["images"] >= 1
    assert report["describe"]["device"] == report["draw"]["device"] == "cpu"


def _run_check(out: Path, **variables: str) -> subprocess.CompletedProcess:
    """gpu_check.sh with this interpreter, writing to `out`, plus the given environment variables."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "PATH": "/usr/bin:/bin", **variables}
    return subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_check_runs_its_cpu_steps_and_skips_the_cuda_ones(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the check would run its GPU steps")
    out = tmp_path / "out"
    p = _run_check(out, TOTAL_S="60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no CUDA: the GPU steps are skipped" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: s["status"] for s in summary["steps"]}
    cuda_steps = ("pytest_gpu", "app", "bench_nf4", "bench_bf16", "nvidia_smi")
    assert status == {"install": "ok", "env": "ok"} | dict.fromkeys(cuda_steps, "skipped")
    assert summary["verdict"] == "incomplete" and not summary["failed_steps"]
    notes = {s["name"]: s["note"] for s in summary["steps"]}
    assert all("CUDA is not available" in notes[n] for n in ("pytest_gpu", "bench_nf4", "bench_bf16", "app"))
    env_facts = json.loads((out / "steps" / "env.detail.json").read_text())
    assert env_facts["cuda_available"] is False and env_facts["torch"] == torch.__version__
    assert env_facts["nvidia_smi"] is None
    install = json.loads((out / "steps" / "install.json").read_text())
    assert install["detail"]["missing"] == [] and install["status"] == "ok"
    assert summary["targets"]["rows"] == []


def test_the_check_records_a_step_cut_by_its_budget(tmp_path):
    """A step past its time box is recorded as a timeout; the next steps still run and are recorded."""
    pytest.importorskip("torch")
    out = tmp_path / "out"
    slow = tmp_path / "slow-python"  # every step starts 1.2 s late, so the env step's 1 s is always passed
    slow.write_text(f'#!/bin/sh\nsleep 1.2\nexec "{sys.executable}" "$@"\n')
    slow.chmod(0o755)
    p = _run_check(out, B_ENV="1", PYTHON=str(slow))
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert p.returncode == 1 and summary["verdict"] == "failed" and summary["failed_steps"] == ["env"]
    assert status["env"] == "timeout" and status["install"] == "ok" and status["nvidia_smi"] == "skipped"
    assert len(status) == 7


def test_the_pytest_step_summarises_the_gpu_tests(tmp_path):
    """The step's JSON names each GPU test; here each is skipped for want of CUDA, which fails the step."""
    xml, detail = tmp_path / "gpu.xml", tmp_path / "gpu.json"
    cmd = [
        sys.executable,
        str(SCRIPTS / "gpu_check_steps.py"),
        "pytest",
        "--xml",
        str(xml),
        "--detail",
        str(detail),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    summary = json.loads(detail.read_text())
    assert summary["rc"] == 0 and summary["errors"] == 0 and summary["tests"] == summary["skipped"] >= 2
    assert any("test_cuda_graphs_match_eager" in t for t in summary["skipped_tests"])
    assert all("CUDA" in t for t in summary["skipped_tests"])
    assert summary["ok"] is False and p.returncode == 1  # on a GPU machine, skipped GPU tests are a failure


def _steps_module():
    spec = importlib.util.spec_from_file_location("gpu_check_steps", SCRIPTS / "gpu_check_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("bf16_note", "met", "verdict"),
    [
        ("SKIP names it", True, "passed"),  # skipped by request: the nf4 targets decide
        ("SKIP names it", False, "failed"),
        ("CUDA is not available", True, "incomplete"),  # skipped for want of something: not a pass
    ],
)
def test_the_verdict_counts_a_requested_skip_apart_from_a_missing_step(tmp_path, bf16_note, met, verdict):
    steps_module, out = _steps_module(), tmp_path
    (out / "steps").mkdir()
    bench = {
        "device_name": "NVIDIA H100",
        "targets": [{"name": "text tok/s", "met": True}, {"name": "x", "met": met}],
    }
    (out / "steps" / "bench_nf4.detail.json").write_text(json.dumps(bench))
    for name in ("install", "env", "pytest_gpu", "app", "bench_nf4", "nvidia_smi"):
        steps_module.record(out, name, "ok", 1.0, 0, "")
    steps_module.record(out, "bench_bf16", "skipped", 0.0, None, bf16_note)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == verdict and summary["skipped_steps"] == ["bench_bf16"]
    assert summary["targets"]["all_met"] is met


def test_a_step_named_in_skip_is_recorded_as_skipped_by_request(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    p = _run_check(out, SKIP="env")
    assert "env: skipped: SKIP names it" in p.stdout, p.stdout + p.stderr
    steps = {s["name"]: s for s in json.loads((out / "summary.json").read_text())["steps"]}
    assert steps["env"]["status"] == "skipped" and steps["env"]["note"] == "SKIP names it"
    assert steps["install"]["status"] == "ok"


def test_gpu_train_runs_recipes_side_by_side_and_packs_each_llm(tmp_path):
    """scripts/gpu_train.sh on this CPU (DEVICE=cpu): two tiny recipes at once, each logged and packed into
    one tarball holding its LLM and training record; a recipe that fails is reported by the exit status."""
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "DEVICE": "cpu",
        "WORK": str(tmp_path / "work"),
        "PYTHON": sys.executable,
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [{"name": "x", "mode": "scratch", "preset": "nope"}]}))
    p = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_train.sh"), "tiny", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 1, p.stdout + p.stderr  # the bad recipe failed, the tiny one did not stop for it
    assert "[gpu_train] tiny: rc 0" in p.stdout and "[gpu_train] bad: rc 1" in p.stdout
    log = (out / "tiny.log").read_text()
    assert "llm step" in log and re.search(r"rc 0 wall \d+ s$", log.strip())
    with tarfile.open(out / "tiny.tar.gz") as tar:
        names = set(tar.getnames())
        record = json.load(tar.extractfile("tiny/training.json"))
    assert {"tiny/llm/model.safetensors", "tiny/llm/config.json", "tiny/training.json"} <= names
    assert record["device"] == "cpu" and not any("vqgan" in n for n in names)


def test_gpu_train_stops_first_when_the_trainer_does_not_import(tmp_path):
    """A bare GPU image lacks the app's packages: the script says so and trains nothing."""
    bare = tmp_path / "python3"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'pydicom'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(bare), "WORK": str(tmp_path / "work")}
    p = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_train.sh"), "round20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "No module named 'pydicom'" in p.stderr and "gpu_check.sh" in p.stderr
    assert not (out / "round20.log").exists()

#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on a bare CUDA machine that has no network.
#
#   scripts/gpu_wheels.sh [DIR]            # default DIR: $WHEELS, else ./gpu_wheels
#
# Needs a package index (pip's usual configuration). Fetches, with no dependency resolution, exactly the pinned
# wheels in scripts/gpu_requirements.txt (what the app and the GPU tests need beyond the image) and
# scripts/gpu_wheel_deps.txt (their dependencies that the image lacks), for the target interpreter and
# platform; never torch or an nvidia-* package (the machine's own CUDA build stays). Two wheels are slimmed so the
# set travels with the repository in one device call (64 MiB in all): bitsandbytes to its CPU and CUDA 13.0
# libraries (43 -> 3.5 MB), gradio without its SSR Node server and sample media (31 -> 20 MB). Sorts them into
# two parts, each small enough for one device call: DIR/app (bitsandbytes, gradio, pydicom, ...) and DIR/nlp
# (spaCy, negspacy and their libraries). Writes DIR/wheels.json (file, part, bytes, sha256) and the sizes.
#
# Environment:
#   PYTHON          interpreter whose pip downloads (default python3)
#   PYTHON_VERSION  target Python (default 3.12, the image's); 3.11 etc. for a local install test
#   PLATFORMS       space-separated pip platform tags (default: the manylinux x86-64 tags glibc 2.39 takes)
#   SLIM            1 (default): drop what no step uses from two wheels (DROP below); 0: keep them whole
#   MAX_MB          fail when a part's wheels add up to more (default 60)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-${WHEELS:-./gpu_wheels}}"
py="${PYTHON:-python3}"
pyver="${PYTHON_VERSION:-3.12}"
platforms="${PLATFORMS:-manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64}"
slim="${SLIM:-1}"
max_mb="${MAX_MB:-60}"

mkdir -p "$dir"
platform_args=()
for p in $platforms; do platform_args+=(--platform "$p"); done
# --no-deps: the two lists are the whole set; resolving would pull torch and the nvidia-* wheels.
"$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp "${platform_args[@]}" \
    -r "$here/gpu_requirements.txt" -r "$here/gpu_wheel_deps.txt" -d "$dir"

"$py" - "$dir" "$slim" "$max_mb" <<'PY'
"""Slim two wheels (rewriting RECORD), refuse torch/nvidia wheels, write wheels.json, report the size."""
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

folder, slim, max_mb = Path(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3])
# Members no step of the check uses. bitsandbytes: libraries for other CUDA, ROCm and XPU versions (the image's
# torch 2.11 is built for CUDA 13.0, so bitsandbytes loads libbitsandbytes_cuda130.so). gradio: the Node server
# for server-side rendering (the app launches with ssr_mode=False) and gradio.media's sample files (unused).
DROP = {
    "bitsandbytes-": re.compile(r"bitsandbytes/libbitsandbytes_(?!cpu\.so$|cuda130\.so$).+\.so$"),
    "gradio-": re.compile(r"gradio/(templates/node|media_assets)/"),
}
# The labeler's NLP stack (spaCy, negspacy and what they need beyond the image): 57 MB, more than one device
# call carries beside the repository, so it is a part of its own, DIR/nlp, installed in a call of its own.
NLP = {
    "blis", "catalogue", "cloudpathlib", "confection", "cymem", "murmurhash", "negspacy", "preshed",
    "smart-open", "spacy", "spacy-legacy", "spacy-loggers", "srsly", "thinc", "wasabi", "weasel",
}
banned = [p.name for p in folder.glob("*.whl") if re.match(r"(torch|nvidia[-_])", p.name.lower())]
if banned:
    sys.exit(f"error: {folder} holds {banned}; the machine's own CUDA torch must stay.")
for prefix, pattern in DROP.items() if slim else ():
    for whl in folder.glob(prefix + "[0-9]*.whl"):
        with zipfile.ZipFile(whl) as z:
            names = [i.filename for i in z.infolist()]
            drop = {n for n in names if pattern.match(n)}
            members = {n: z.read(n) for n in names if n not in drop}
        if not drop:
            continue
        record = next(n for n in members if n.endswith(".dist-info/RECORD"))
        lines = [ln for ln in members[record].decode().splitlines() if ln.split(",")[0] not in drop]
        members[record] = ("\n".join(lines) + "\n").encode()
        tmp = whl.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for name, data in members.items():
                out.writestr(name, data)
        tmp.replace(whl)
        print(f"{whl.name}: dropped {len(drop)} files no step uses")



def part_of(wheel: Path) -> str:
    return "nlp" if re.sub(r"[-_.]+", "-", wheel.name.split("-")[0].lower()) in NLP else "app"


rows = []
for p in sorted(folder.glob("*.whl")):
    (folder / part_of(p)).mkdir(exist_ok=True)
    p = p.replace(folder / part_of(p) / p.name)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    rows.append({"file": p.name, "part": p.parent.name, "bytes": p.stat().st_size, "sha256": digest})
parts = {name: sum(r["bytes"] for r in rows if r["part"] == name) for name in ("app", "nlp")}
total = sum(parts.values())
manifest = {"total_bytes": total, "part_bytes": parts, "wheels": rows}
(folder / "wheels.json").write_text(json.dumps(manifest, indent=2) + "\n")
sizes = ", ".join(f"{name}/ {size / 1e6:.1f} MB" for name, size in parts.items())
print(f"{len(rows)} wheels, {total / 1e6:.1f} MB in {folder}: {sizes}")
if over := [k for k, v in parts.items() if v > max_mb * 1e6]:
    sys.exit(f"error: {over} over MAX_MB={max_mb:g} each.")
PY

"""loading/hub.py: Hub locations resolved from a local folder laid out as the Hugging Face cache; never the network."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_VQGAN

from llmcxr_app.config import ModelLocation, RuntimeConfig
from llmcxr_app.loading import hub
from llmcxr_app.loading.convert import convert_vqgan
from llmcxr_app.loading.weights import WeightsError, load_llm, load_model

REPO = "llmcxr-test/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Offline, with an empty cache of our own; a call that would download fails the test loudly."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    real = huggingface_hub.snapshot_download

    def guard(*args, **kwargs):
        assert kwargs.get("local_files_only"), "a test tried to reach the Hub"
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", guard)


def put_in_cache(
    cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT, ref: str = "main"
) -> Path:
    """Lay files out as huggingface_hub 2.4 does: blobs/<sha256>, snapshots/<commit>/<path> -> blob, refs/<ref>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for rel, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():  # a second download into the same snapshot adds files
            link.symlink_to(Path(*[".."] * (rel.count("/") + 2), "blobs", blob.name))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return repo / "snapshots" / commit


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory, tiny_llm_dir, tiny_vqgan_files) -> dict[str, Path]:
    """The files of a converted model repo (docs/DEPLOY.md layout), plus a stray .bin that must not be fetched."""
    vq = tmp_path_factory.mktemp("vq")
    yaml_out, st_out = convert_vqgan(*tiny_vqgan_files, vq)
    files = {p.name: p for p in tiny_llm_dir.iterdir() if p.is_file()}
    files["vqgan/vqgan.yaml"], files["vqgan/vqgan.safetensors"] = yaml_out, st_out
    return files


def test_fake_cache_is_what_huggingface_hub_scans(tmp_path, repo_files):
    from huggingface_hub import scan_cache_dir

    put_in_cache(tmp_path, REPO, repo_files)
    (info,) = scan_cache_dir(tmp_path).repos
    assert info.repo_id == REPO and info.repo_type == "model" and not scan_cache_dir(tmp_path).warnings
    (rev,) = info.revisions
    assert rev.commit_hash == COMMIT and rev.refs == frozenset({"main"}) and len(rev.files) == len(repo_files)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("org/name", True),
        ("hf://org/name", True),
        ("hf://org/name@v1/vqgan/vqgan.yaml", True),
        ("hf://not a repo", True),  # says Hub; resolve() then explains what is wrong with it
        ("org/model.v2", True),  # repo names may hold dots
        ("org/model.ckpt", False),  # looks like a file in a folder
        ("org/name/sub", False),  # a path inside a repo needs hf://
        ("./org/name", False),
        ("/abs/org", False),
        ("../org/name", False),
        ("org--x/na..me", False),  # not a valid repo id
        ("", False),
        (Path("org/name"), False),  # a Path is always local
    ],
)
def test_is_hub_spec(spec, expected):
    assert hub.is_hub_spec(spec) is expected


def test_existing_local_folder_is_never_a_repo_id(tmp_path, monkeypatch, tiny_llm_dir):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_llm_dir, tmp_path / "org" / "name")
    assert not hub.is_hub_spec("org/name")
    assert hub.local_path("org/name") == Path("org/name")
    llm = load_llm("org/name", quantization="fp32", device="cpu", codebook_size=TINY_VQGAN.n_embed)
    assert llm.layout.total_vocab == llm.model.get_input_embeddings().weight.shape[0]


def test_parse_hub_spec():
    s = hub.parse_hub_spec(f"hf://{REPO}@v1/vqgan/vqgan.yaml")
    assert (s.repo_id, s.revision, s.path, s.repo_type, s.is_file) == (
        REPO,
        "v1",
        "vqgan/vqgan.yaml",
        "model",
        True,
    )
    assert s.allow_patterns() == ["vqgan/vqgan.yaml"] and str(s) == f"hf://{REPO}@v1/vqgan/vqgan.yaml"
    root = hub.parse_hub_spec(REPO)
    assert (root.path, root.revision, root.is_file) == ("", None, False)
    patterns = root.allow_patterns()
    assert "config.json" in patterns and "model-*-of-*.safetensors" in patterns
    assert not any(p.startswith("*") for p in patterns)  # `*` crosses `/` on the Hub: would pull vqgan/
    sub = hub.parse_hub_spec(f"hf://{REPO}/llm")
    assert sub.allow_patterns()[0] == "llm/config.json"
    for bad, why in [("hf://spaces/org/app", "model"), ("hf://org", "not a Hub location")]:
        with pytest.raises(WeightsError, match=why):
            hub.parse_hub_spec(bad)


def test_llm_from_cache_loads_like_the_folder(tmp_path, repo_files, tiny_llm_dir, monkeypatch):
    snapshot = put_in_cache(tmp_path, REPO, repo_files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    path = hub.resolve(REPO)
    assert path == snapshot and (path / "config.json").is_file()
    assert hub.resolve(f"hf://{REPO}@{COMMIT}") == snapshot  # pinned commit: no refs needed
    a = load_llm(path, quantization="fp32", device="cpu", codebook_size=TINY_VQGAN.n_embed)
    b = load_llm(tiny_llm_dir, quantization="fp32", device="cpu", codebook_size=TINY_VQGAN.n_embed)
    ids = torch.arange(3, 40)[None]
    with torch.no_grad():
        assert torch.equal(a.model(ids).logits, b.model(ids).logits)
    assert a.weight_hash == b.weight_hash  # names and bytes, not paths: the cache's symlinks change nothing


def test_vqgan_file_specs_from_cache(tmp_path, repo_files):
    put_in_cache(tmp_path, REPO, repo_files, ref="v1")
    cfg = hub.resolve(f"hf://{REPO}@v1/vqgan/vqgan.yaml", cache=tmp_path)
    ckpt = hub.resolve(f"hf://{REPO}@v1/vqgan/vqgan.safetensors", cache=tmp_path)
    assert cfg.name == "vqgan.yaml" and cfg.read_bytes() == repo_files["vqgan/vqgan.yaml"].read_bytes()
    assert ckpt.is_file() and ckpt.parent == cfg.parent
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        hub.resolve(f"hf://{REPO}/vqgan/vqgan.yaml", cache=tmp_path)  # only ref v1 is cached, not main


def test_offline_and_not_cached_says_how_to_fix(tmp_path):
    with pytest.raises(WeightsError) as err:
        hub.resolve("someone/llm-cxr-nf4")
    msg = str(err.value)
    assert (
        "hf://someone/llm-cxr-nf4" in msg and "HF_HUB_OFFLINE" in msg and str(tmp_path / "empty-cache") in msg
    )
    assert "hf download someone/llm-cxr-nf4 --include 'config.json'" in msg
    assert "not a local path either" in msg and str(Path("someone/llm-cxr-nf4").absolute()) in msg


def test_incomplete_snapshot_is_not_used(tmp_path, repo_files):
    partial = {
        k: v for k, v in repo_files.items() if not k.endswith(".safetensors")
    }  # an interrupted download
    put_in_cache(tmp_path, REPO, partial)
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        hub.resolve(REPO, cache=tmp_path)


class FakeHub:
    """snapshot_download over a local folder: the real cache-only lookup, downloads copied into the cache."""

    def __init__(self, remote: dict[str, Path], cache: Path, error: Exception | None = None):
        self.remote, self.cache, self.error = remote, cache, error
        self.calls: list[list[str]] = []

    def __call__(self, repo_id, *, allow_patterns, local_files_only=False, token=None, **kwargs):
        from huggingface_hub import _snapshot_download
        from huggingface_hub.utils import filter_repo_objects

        if local_files_only:
            return _snapshot_download.snapshot_download(
                repo_id, allow_patterns=allow_patterns, local_files_only=True, **kwargs
            )
        self.calls.append(list(allow_patterns))
        self.token = token
        if self.error is not None:
            raise self.error
        chosen = set(filter_repo_objects(self.remote, allow_patterns=allow_patterns))
        return str(put_in_cache(self.cache, repo_id, {k: v for k, v in self.remote.items() if k in chosen}))


@pytest.fixture
def online(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def install(fake: FakeHub) -> FakeHub:
        monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
        return fake

    return install


def test_download_fetches_only_what_load_llm_reads(tmp_path, repo_files, online, monkeypatch):
    remote = {
        **repo_files,
        "pytorch_model.bin": repo_files["model.safetensors"],
        "README.md": repo_files["config.json"],
    }
    fake = online(FakeHub(remote, tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    path = hub.resolve(REPO, cache=tmp_path)
    got = {p.name for p in path.rglob("*") if p.is_file()}
    assert "model.safetensors" in got and "config.json" in got and "tokenizer.json" in got
    assert not got & {"pytorch_model.bin", "README.md", "vqgan.yaml", "vqgan.safetensors"}
    assert len(fake.calls) == 1 and fake.token == "hf_test_token"
    hub.resolve(REPO, cache=tmp_path)  # second start: from the cache, no download
    assert len(fake.calls) == 1


def test_download_falls_back_to_pytorch_model_bin(tmp_path, repo_files, online):
    remote = {k: v for k, v in repo_files.items() if k != "model.safetensors"}
    remote["pytorch_model.bin"] = repo_files["model.safetensors"]  # bytes do not matter here, names do
    fake = online(FakeHub(remote, tmp_path))
    path = hub.resolve(REPO, cache=tmp_path)
    assert (path / "pytorch_model.bin").is_file() and len(fake.calls) == 2
    assert "pytorch_model.bin" not in fake.calls[0] and "pytorch_model.bin" in fake.calls[1]


def _http_error(cls, status: int):
    import httpx2

    response = httpx2.Response(
        status, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{REPO}")
    )
    return cls(f"{status} Client Error", response=response)


@pytest.mark.parametrize(
    "make_error, message",
    [
        (
            lambda e: _http_error(e.RepositoryNotFoundError, 401),
            "not found on the Hugging Face Hub, or it is private and HF_TOKEN is not set",
        ),
        (
            lambda e: _http_error(e.GatedRepoError, 403),
            "gated repo: accept its conditions at https://huggingface.co/llmcxr-test/tiny",
        ),
        (lambda e: _http_error(e.HfHubHTTPError, 403), "Not authorised"),
        (lambda e: _http_error(e.RevisionNotFoundError, 404), "no revision"),
        (lambda e: e.LocalEntryNotFoundError("connection refused"), "unreachable.*hf download"),
    ],
)
def test_hub_failures_become_weights_errors(tmp_path, online, make_error, message):
    from huggingface_hub import errors

    online(FakeHub({}, tmp_path, error=make_error(errors)))
    with pytest.raises(WeightsError, match=message):
        hub.resolve(REPO, cache=tmp_path)


def test_repo_without_the_file_lists_what_it_has(tmp_path, repo_files, online):
    online(FakeHub({"config.json": repo_files["config.json"]}, tmp_path))
    with pytest.raises(WeightsError, match=r"has no LLM folder.*fetched only \['config.json'\]"):
        hub.resolve(REPO, cache=tmp_path)


def test_load_model_from_hub_locations(tmp_path, repo_files, monkeypatch):
    """What a Space does with LLMCXR_LLM=org/name and hf://org/name/vqgan/... (loading.weights -> hub.local_path)."""
    put_in_cache(tmp_path, REPO, repo_files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    location = ModelLocation(
        llm=REPO,
        vqgan_config=f"hf://{REPO}/vqgan/vqgan.yaml",
        vqgan_ckpt=f"hf://{REPO}/vqgan/vqgan.safetensors",
    )
    llm, vqgan = load_model(
        location, RuntimeConfig(device="cpu", quantization="fp32", fast_path=False, warmup=False)
    )
    assert (
        vqgan.n_embed == TINY_VQGAN.n_embed
        and llm.layout.total_vocab == llm.model.get_input_embeddings().weight.shape[0]
    )
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        load_model(
            ModelLocation(
                llm="someone/else", vqgan_config=location.vqgan_config, vqgan_ckpt=location.vqgan_ckpt
            ),
            RuntimeConfig(device="cpu", quantization="fp32"),
        )

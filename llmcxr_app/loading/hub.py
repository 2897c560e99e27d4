"""Weights on the Hugging Face Hub: `org/name` or `hf://org/name[@revision][/path]` -> a local path.

A Hub location is fetched once into the Hub cache (HF_HUB_CACHE, ~/.cache/huggingface/hub by default) with
only the files the app reads, and found there without any network call afterwards. HF_HUB_OFFLINE=1 never
touches the network. HF_TOKEN (a Space secret) authorises private or gated repos. Every failure becomes a
WeightsError that says what to do.

A bare `org/name` means the repo root, which must hold the LLM (config.json, tokenizer, weights). A path
inside a repo needs the `hf://` form; a path ending in a weights or config suffix (.yaml, .ckpt,
.safetensors, ...) names one file (the VQ-GAN YAML and checkpoint), any other path a folder holding an LLM.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llmcxr_app.loading.checkpoint_io import WeightsError  # also weights.WeightsError
from llmcxr_app.loading.files import llm_weight_files  # import-light: no torch, no loader

log = logging.getLogger(__name__)

SCHEME = "hf://"
# A path in a repo with one of these suffixes names a single file; anything else names an LLM folder.
FILE_SUFFIXES = (".yaml", ".yml", ".ckpt", ".safetensors", ".bin", ".pt", ".pth", ".json")
# What load_llm reads from an LLM folder (transformers' names); nothing else is downloaded. Exact root names,
# because the Hub's patterns let `*` cross `/` and must not pull a sibling folder such as vqgan/.
LLM_META_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "conversion.json",
)
LLM_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")
LLM_PYTORCH_BIN = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")
_BARE_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class HubSpec:
    """One location on the Hub, parsed."""

    repo_id: str  # "org/name"
    path: str  # file or folder inside the repo, "/"-separated; "" = the repo root
    revision: str | None  # branch, tag or commit hash; None = the default branch
    repo_type: str  # "model" or "dataset"

    @property
    def is_file(self) -> bool:
        """True when the spec names one file rather than an LLM folder."""
        return self.path.lower().endswith(FILE_SUFFIXES)

    def allow_patterns(self, weights: tuple[str, ...] = LLM_SAFETENSORS) -> list[str]:
        """snapshot_download patterns: the file itself, or an LLM folder's metadata plus ``weights``."""
        if self.is_file:
            return [self.path]
        prefix = f"{self.path}/" if self.path else ""
        return [prefix + name for name in (*LLM_META_FILES, *weights)]

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        kind = "datasets/" if self.repo_type == "dataset" else ""
        return f"{SCHEME}{kind}{self.repo_id}{rev}" + (f"/{self.path}" if self.path else "")


def is_hub_spec(spec: object) -> bool:
    """Whether a weights location names the Hub rather than the local disk.

    True for any ``hf://`` string, and for a bare ``org/name`` that is not an existing path, does not look
    like a file (``dir/model.ckpt``) and is a valid repo id. An existing file or folder is always local, and
    so is every ``pathlib.Path``, absolute or ``./``-relative string and anything with a backslash.
    """
    if not isinstance(spec, str):
        return False
    if spec.startswith(SCHEME):
        return True
    if not _BARE_ID.match(spec) or spec.lower().endswith(FILE_SUFFIXES):
        return False
    if Path(spec).expanduser().exists():
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def parse_hub_spec(spec: str) -> HubSpec:
    """Parse ``org/name`` or ``hf://[models/|datasets/]org/name[@revision][/path]``; WeightsError if malformed."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(spec if spec.startswith(SCHEME) else SCHEME + spec)
    except HfUriError as exc:
        raise WeightsError(
            f"{spec!r} is not a Hub location: {exc} Write it as org/name, or hf://org/name/path/to/file."
        ) from exc
    if uri.type not in ("model", "dataset"):
        raise WeightsError(f"{spec!r}: weights must live in a model (or dataset) repo, not a {uri.type}.")
    path = str(PurePosixPath(uri.path_in_repo)) if uri.path_in_repo else ""
    if path.startswith("..") or "/../" in f"/{path}/":
        raise WeightsError(f"{spec!r}: a path inside a repo cannot go up with '..'.")
    return HubSpec(repo_id=uri.id, path=path, revision=uri.revision, repo_type=uri.type)


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now; huggingface_hub reads it only at import."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or env.strip().lower() in _TRUE


def cache_dir() -> Path:
    """The Hub cache in effect now (HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _complete(target: Path, hub: HubSpec) -> bool:
    """The file exists, or the folder has config.json, a tokenizer and every weight file its index names."""
    if hub.is_file:
        return target.is_file()
    if not (target / "config.json").is_file() or not any(
        (target / name).is_file() for name in ("tokenizer.json", "vocab.json")
    ):
        return False
    try:
        llm_weight_files(target)
    except (WeightsError, ValueError, KeyError):  # missing shards, or a truncated index
        return False
    return True


def _stages(hub: HubSpec) -> list[list[str]]:
    # safetensors first: a repo holding both formats must not cost a second multi-GB download.
    if hub.is_file:
        return [hub.allow_patterns()]
    return [hub.allow_patterns(LLM_SAFETENSORS), hub.allow_patterns(LLM_PYTORCH_BIN)]


def _from_cache(hub: HubSpec, cache: Path) -> Path | None:
    """The target inside an already cached snapshot, or None (no network call)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for patterns in _stages(hub):
        try:
            root = snapshot_download(
                hub.repo_id,
                repo_type=hub.repo_type,
                revision=hub.revision,
                cache_dir=cache,
                allow_patterns=patterns,
                local_files_only=True,
            )
        except LocalEntryNotFoundError:  # also IncompleteSnapshotError: the next stage may still be cached
            continue
        target = Path(root) / hub.path
        if _complete(target, hub):
            return target
    return None


def download_command(hub: HubSpec) -> str:
    """The `hf download` command that fills the cache with what resolve() needs."""
    parts = ["hf download", hub.repo_id]
    if hub.repo_type == "dataset":
        parts.append("--repo-type dataset")
    if hub.revision:
        parts.append(f"--revision {hub.revision}")
    parts += [hub.path] if hub.is_file else [f"--include '{p}'" for p in hub.allow_patterns()]
    return " ".join(parts)


def _token_hint() -> str:
    if os.environ.get("HF_TOKEN"):
        return "HF_TOKEN is set, but its account has no access to it"
    return "HF_TOKEN is not set (on a Space: Settings > Variables and secrets > New secret HF_TOKEN)"


def _local_hint(spec: str) -> str:
    if spec.startswith(SCHEME):
        return ""
    return f" It is not a local path either (no {Path(spec).expanduser().absolute()})."


def _fetch(hub: HubSpec, spec: str, cache: Path, patterns: list[str]) -> str:
    """One snapshot_download of ``patterns``; WeightsError naming the fix on every Hub failure."""
    from huggingface_hub import snapshot_download  # optional at import time: only Hub locations need it
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return snapshot_download(
            hub.repo_id,
            repo_type=hub.repo_type,
            revision=hub.revision,
            cache_dir=cache,
            allow_patterns=patterns,
            token=os.environ.get("HF_TOKEN") or None,
        )
    except GatedRepoError as exc:
        raise WeightsError(
            f"{hub.repo_id} is a gated repo: accept its conditions at {_url(hub)} with the account whose "
            f"token is HF_TOKEN; {_token_hint()}."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(
            f"Repo {hub.repo_id} was not found on the Hugging Face Hub, or it is private and {_token_hint()}."
            f"{_local_hint(spec)}"
        ) from exc
    except RevisionNotFoundError as exc:
        raise WeightsError(
            f"{hub.repo_id} has no revision {hub.revision!r} (a branch, tag or commit hash)."
        ) from exc
    except LocalEntryNotFoundError as exc:  # the Hub could not be reached and nothing usable is cached
        raise WeightsError(
            f"Cannot download {hub}: the Hugging Face Hub is unreachable ({exc.__class__.__name__}) and the "
            f"files are not in the cache {cache}. Check the network, or fill the cache elsewhere with "
            f"`{download_command(hub)}` and copy it.{_local_hint(spec)}"
        ) from exc
    except HFValidationError as exc:
        raise WeightsError(f"{spec!r} is not a valid Hub repo id: {exc}") from exc
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise WeightsError(f"Not authorised to download {hub} ({status}): {_token_hint()}.") from exc
        raise WeightsError(f"The Hugging Face Hub refused {hub}: {exc}") from exc


def _url(hub: HubSpec) -> str:
    return f"https://huggingface.co/{'datasets/' if hub.repo_type == 'dataset' else ''}{hub.repo_id}"


def _download(hub: HubSpec, spec: str, cache: Path) -> Path:
    """Fetch the target's files into ``cache`` (safetensors first, then other formats) until complete."""
    root = None
    for patterns in _stages(hub):
        log.info("Fetching %s from the Hugging Face Hub into %s", hub, cache)
        root = _fetch(hub, spec, cache, patterns)
        target = Path(root) / hub.path
        if _complete(target, hub):
            return target
    found = sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file()) if root else []
    what = "such file" if hub.is_file else "LLM folder (config.json, tokenizer, model*.safetensors)"
    raise WeightsError(
        f"{_url(hub)} (revision {hub.revision or 'main'}) has no {what} at {hub.path or 'its root'}; "
        f"fetched only {found[:8]}. Convert and upload the weights as docs/DEPLOY.md shows."
    )


def resolve(spec: str, *, cache: str | os.PathLike | None = None) -> Path:
    """The local path of a Hub location, from the cache if complete there, else downloaded.

    ``spec``: ``org/name`` or ``hf://org/name[@revision][/path]``. ``cache``: the Hub cache folder (default
    cache_dir()). Returns the file, or the LLM folder, inside the cached snapshot. HF_HUB_OFFLINE=1 makes
    a missing cache entry an error instead of a download.
    """
    hub = parse_hub_spec(spec)
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    found = _from_cache(hub, root)
    if found is not None:
        return found
    if offline():
        raise WeightsError(
            f"{hub} is not in the Hugging Face cache {root} and HF_HUB_OFFLINE is set, so it cannot be "
            f"downloaded. Unset HF_HUB_OFFLINE for one online start, or fetch it first (same HF_HUB_CACHE): "
            f"`{download_command(hub)}`.{_local_hint(spec)}"
        )
    return _download(hub, spec, root)


def local_path(spec: str | os.PathLike) -> Path:
    """A weights location as a local path: Hub locations resolved (and fetched), anything else as given."""
    if is_hub_spec(spec):
        return resolve(str(spec))
    return Path(spec).expanduser()

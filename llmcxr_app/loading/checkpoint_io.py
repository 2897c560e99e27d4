"""Read tensor checkpoints without running code: .safetensors, Lightning .ckpt and plain torch state dicts.

Lightning pickles training classes (callbacks, hyper-parameters) next to the weights, which torch's safe loader
refuses; a restricted unpickler reads those files instead, turning every class it does not know into an inert
stub. Nothing here ever calls torch.load with weights_only=False.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


# Defined at the lowest layer that raises it; weights.py re-exports it, so callers catch one class.
class WeightsError(ValueError):
    """A checkpoint is missing, in the wrong format, or does not match the rest of the model."""


# ---------------------------------------------------------------- restricted unpickling of Lightning .ckpt files

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}

# What a tensor checkpoint needs and nothing that can run code: tensor rebuilders, containers, plain builtins.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles spell bytes
    **{
        ("builtins", n): getattr(builtins, n)
        for n in (
            "set",
            "frozenset",
            "list",
            "dict",
            "tuple",
            "int",
            "float",
            "complex",
            "bool",
            "str",
            "bytes",
            "bytearray",
            "slice",
        )
    },
}


class _Inert:
    """Stands in for any class or function a checkpoint names beyond tensors; it runs nothing and keeps nothing."""

    pickled_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def _drop(self, *args: Any, **kwargs: Any) -> None:
        """Takes what unpickling feeds an object (constructor arguments, state, items) and ignores it."""

    __init__ = __setstate__ = __setitem__ = append = extend = _drop

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return self

    def __repr__(self) -> str:
        return f"<not loaded: {self.pickled_name}>"


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's zip checkpoints allowing only _ALLOWED_GLOBALS; anything else becomes an inert stub."""

    def __init__(self, data: bytes, read_storage: Any):
        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage  # (key, dtype, nbytes) -> UntypedStorage

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles spell Python 2 names (`__builtin__.set`); map them as pickle's own find_class
        # does, before the allow-list. Python 3 pickles never use these names, so mapping always is safe.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "torch.tensor":  # renamed in torch 1.8, still found in older pickles
            module = "torch._tensor"
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        return type(name, (_Inert,), {"pickled_name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        dtype = storage_type.dtype
        nbytes = int(numel) * torch.empty((), dtype=dtype).element_size()
        untyped = self._read_storage(str(key), dtype, nbytes)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _restricted_torch_load(path: Path) -> Any:
    """torch.save zip format through _RestrictedUnpickler; tensors are memory-mapped, read only when touched."""
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkls = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise WeightsError(f"{path} is a zip file but not a torch checkpoint (no data.pkl).")
        prefix = pkls[0][: -len("data.pkl")]
        order = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in infos else "little"
        data = zf.read(pkls[0])
    mapped = torch.UntypedStorage.from_file(str(path), False, path.stat().st_size)

    def read_storage(key: str, dtype: torch.dtype, nbytes: int) -> torch.UntypedStorage:
        info = infos.get(f"{prefix}data/{key}")
        if info is None or info.compress_type != zipfile.ZIP_STORED or info.file_size != nbytes:
            raise WeightsError(
                f"{path}: tensor record {key} is missing or malformed; the file may be truncated."
            )
        with open(path, "rb") as f:  # the data start is after the local header, whose extra field varies
            f.seek(info.header_offset)
            header = f.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        storage = mapped[start : start + nbytes]
        if order != sys.byteorder:
            storage.byteswap(dtype)
        return storage

    return _RestrictedUnpickler(data, read_storage).load()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a .safetensors file, a Lightning .ckpt (its `state_dict`) or a plain torch state dict.

    Tensors keep the dtype and shape they were saved with, on CPU; those of torch zip files are memory-mapped
    (read from disk when touched), so clone them to own them. Every key is kept, training-only ones included.
    Raises WeightsError for an unreadable, truncated or non-state-dict file.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if not zipfile.is_zipfile(path):
        try:  # pre-1.6 torch format: only the safe loader, which refuses pickled classes
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(
                f"Cannot read {path} ({type(exc).__name__}); expected a Lightning .ckpt saved by torch >= 1.6 "
                "or a .safetensors file."
            ) from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError:
            # Lightning pickles training classes (callbacks, hyper-parameters) that the safe loader refuses;
            # never fall back to weights_only=False, which would run whatever the file names.
            try:
                obj = _restricted_torch_load(path)
            except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, EOFError) as exc:
                raise WeightsError(
                    f"Cannot read {path} safely ({type(exc).__name__}: {str(exc)[:200]}); convert it to "
                    ".safetensors where it was made (state_dict without loss.* keys)."
                ) from exc
        except (RuntimeError, EOFError) as exc:
            raise WeightsError(f"Cannot read {path} ({exc}); the download may be truncated.") from exc
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(
            f"{path} holds no state dict (expected a Lightning .ckpt with a 'state_dict' entry)."
        )
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: state dict entries that are not tensors: {bad[:5]}.")
    return sd

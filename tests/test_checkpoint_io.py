"""loading/checkpoint_io.py: every format read against torch's own safe loader; pickled code never runs; bad files."""

from __future__ import annotations

import builtins
import os
import pickle
import struct
import subprocess
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llmcxr_app.loading.checkpoint_io import WeightsError, _restricted_torch_load, read_state_dict
from llmcxr_app.loading.weights import WeightsError as WeightsErrorOfWeights


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "encoder.conv_in.weight": torch.randn(4, 3, 3, 3, generator=g),
        "encoder.conv_in.bias": torch.randn(4, generator=g).half(),
        "quantize.embedding.weight": torch.randn(8, 2, generator=g).bfloat16(),
        "loss.logvar": torch.tensor(0.5, dtype=torch.float64),
        "num_batches_tracked": torch.tensor(7),
        "mask": torch.rand(5, generator=g) > 0.5,
    }


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)  # safetensors returns its keys sorted
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and got[k].device.type == "cpu", k
        assert torch.equal(got[k], v), k


class Callback:
    """Stands for the training classes Lightning pickles into a .ckpt (callbacks, hyper-parameters)."""

    def __init__(self) -> None:
        self.best_model_score = torch.tensor(0.123)
        self.monitor = "val/rec_loss"


class Payload:
    """Unpickles as ``func(*args)``: what a malicious checkpoint uses to run code on load."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path) -> list[Payload]:
    return [
        Payload(os.system, f"touch {marker}"),
        Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        Payload(subprocess.call, ["touch", str(marker)]),
        Payload(builtins.__import__, "os"),
    ]


def _lightning_ckpt(path: Path, sd: dict, marker: Path) -> Path:
    # The callback comes first so that torch's safe loader stops at its class, not at a tensor record.
    obj = {"callbacks": {"ModelCheckpoint": Callback()}, "epoch": 3, "state_dict": sd, "x": _payloads(marker)}
    torch.save(obj, path)
    return path


def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes | None]) -> None:
    """Copy a torch zip, replacing records (None drops one), keeping data 64-byte aligned as torch does."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            name = info.filename
            data = replace.get(name.split("/", 1)[1], zin.read(name))
            if data is None:
                continue
            pad = -(zout.fp.tell() + 30 + len(name) + 4) % 64
            out = zipfile.ZipInfo(name, date_time=info.date_time)
            out.extra = struct.pack("<HH", 0xF00D, pad) + b"\0" * pad
            zout.writestr(out, data)


def test_weights_error_is_one_class():
    assert WeightsError is WeightsErrorOfWeights and issubclass(WeightsError, ValueError)


def test_formats_give_the_same_state_dict(tmp_path):
    sd = _state_dict()
    save_file(sd, str(tmp_path / "a.safetensors"))
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"epoch": 1, "state_dict": OrderedDict(sd)}, tmp_path / "lightning.ckpt")
    torch.save({"state_dict": sd}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    _lightning_ckpt(tmp_path / "classes.ckpt", sd, tmp_path / "pwned")
    assert not zipfile.is_zipfile(tmp_path / "legacy.ckpt")  # really the pre-1.6 format
    for name in ("a.safetensors", "plain.pt", "lightning.ckpt", "legacy.ckpt", "classes.ckpt"):
        _assert_same(read_state_dict(tmp_path / name), sd)
    _assert_same(read_state_dict(str(tmp_path / "plain.pt")), sd)  # str paths too
    assert not (tmp_path / "pwned").exists()


def test_restricted_loader_matches_torch_load(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    obj = {
        "base": base,
        "view": base[1:],
        "transposed": base.t(),
        "param": torch.nn.Parameter(torch.ones(2)),
        "complex": torch.complex(torch.ones(2), -torch.ones(2)),
        "int8": torch.tensor([-3, 4], dtype=torch.int8),
        "uint8": torch.tensor([250], dtype=torch.uint8),
        "int16": torch.tensor([-300], dtype=torch.int16),
        "int32": torch.tensor([1 << 20], dtype=torch.int32),
        "empty": torch.empty(0, 3),
        "od": OrderedDict(a=1),
        "size": torch.Size([2, 3]),
        "bytes": b"\x00\xff",
        "nested": [(1.5, "s", None, True)],
    }
    torch.save(obj, tmp_path / "x.pt")
    want = torch.load(tmp_path / "x.pt", weights_only=True)  # the reference: torch's own safe loader
    got = _restricted_torch_load(tmp_path / "x.pt")
    assert list(got) == list(want)
    for k, v in want.items():
        assert type(got[k]) is type(v), k
        if isinstance(v, torch.Tensor):
            assert got[k].dtype == v.dtype and got[k].stride() == v.stride() and torch.equal(got[k], v), k
        else:
            assert got[k] == v, k
    assert got["param"].requires_grad
    # Views still share one storage, as saved: the storage is read once, not per tensor.
    assert got["view"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()


@pytest.mark.parametrize("protocol", [2, 3, pickle.HIGHEST_PROTOCOL])
def test_old_pickle_protocols_read_like_torch(tmp_path, protocol):
    # Protocol 2 writes Python 2 names (__builtin__.set, copy_reg) that must map to their Python 3 homes.
    obj = {"w": torch.ones(2, 3), "hparams": {"tags": {"a", "b"}, "sizes": frozenset({1}), "n": 2}}
    torch.save(obj, tmp_path / "p.pt", pickle_protocol=protocol)
    with zipfile.ZipFile(tmp_path / "p.pt") as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    assert (b"__builtin__" in pkl) == (protocol == 2)
    got = _restricted_torch_load(tmp_path / "p.pt")  # torch's safe loader refuses frozenset: no reference
    assert got["hparams"] == obj["hparams"]
    torch.testing.assert_close(got["w"], obj["w"])


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_never_runs(tmp_path, legacy):
    sd, marker = _state_dict(), tmp_path / "pwned"
    path = tmp_path / "trained.ckpt"
    if legacy:
        torch.save({"state_dict": sd, "x": _payloads(marker)}, path, _use_new_zipfile_serialization=False)
        with pytest.raises(WeightsError, match=r"Cannot read .*UnpicklingError.*torch >= 1.6"):
            read_state_dict(path)
    else:
        _lightning_ckpt(path, sd, marker)
        with pytest.raises(pickle.UnpicklingError):  # the safe loader refuses, so the restricted one runs
            torch.load(path, weights_only=True)
        _assert_same(read_state_dict(path), sd)
    assert not marker.exists()


def test_classes_become_inert_stubs(tmp_path):
    marker = tmp_path / "pwned"
    got = _restricted_torch_load(_lightning_ckpt(tmp_path / "t.ckpt", _state_dict(), marker))
    callback = got["callbacks"]["ModelCheckpoint"]
    assert repr(callback) == f"<not loaded: {Callback.__module__}.Callback>"
    assert not hasattr(callback, "monitor") and not hasattr(callback, "best_model_score")  # state is dropped
    names = ["system", "exec", "eval", "call", "__import__"]
    assert len(got["x"]) == len(names)
    for stub, name in zip(got["x"], names, strict=True):
        assert repr(stub).startswith("<not loaded: ") and repr(stub).endswith(f".{name}>"), repr(stub)
    assert repr(got["x"][0]) == f"<not loaded: {os.system.__module__}.system>"
    assert got["epoch"] == 3 and not marker.exists()


def test_big_endian_checkpoint_is_byteswapped(tmp_path):
    sd = {k: v for k, v in _state_dict().items() if v.dtype != torch.bool}
    torch.save({"state_dict": sd}, tmp_path / "little.ckpt")
    with zipfile.ZipFile(tmp_path / "little.ckpt") as zf:
        assert zf.read("little/byteorder") == b"little"
        swapped = {
            f"data/{i}": v.contiguous().numpy(force=True).byteswap().tobytes()
            if v.dtype != torch.bfloat16
            else v.view(torch.int16).numpy().byteswap().tobytes()
            for i, v in enumerate(sd.values())
        }
        assert all(
            len(swapped[f"data/{i}"]) == zf.getinfo(f"little/data/{i}").file_size for i in range(len(sd))
        )
    _rewrite_zip(tmp_path / "little.ckpt", tmp_path / "big.ckpt", {"byteorder": b"big", **swapped})
    _assert_same(torch.load(tmp_path / "big.ckpt", weights_only=True)["state_dict"], sd)  # the file is right
    _assert_same(_restricted_torch_load(tmp_path / "big.ckpt")["state_dict"], sd)
    _assert_same(read_state_dict(tmp_path / "big.ckpt"), sd)


def test_not_a_state_dict(tmp_path):
    for i, obj in enumerate(
        [{}, {"epoch": 1, "state_dict": None}, {"state_dict": {}}, [torch.zeros(1)], torch.zeros(2)]
    ):
        torch.save(obj, tmp_path / f"{i}.ckpt")
        with pytest.raises(WeightsError, match="holds no state dict.*'state_dict' entry"):
            read_state_dict(tmp_path / f"{i}.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(1), "step": 3, "lr": 0.1}}, tmp_path / "mixed.ckpt")
    with pytest.raises(WeightsError, match=r"entries that are not tensors: \['step', 'lr'\]"):
        read_state_dict(tmp_path / "mixed.ckpt")
    # Through the restricted loader, a pickled object inside the state dict is a stub, not a tensor.
    torch.save(
        {"cb": Callback(), "state_dict": {"w": torch.zeros(1), "cb": Callback()}}, tmp_path / "cls.ckpt"
    )
    with pytest.raises(WeightsError, match=r"entries that are not tensors: \['cb'\]"):
        read_state_dict(tmp_path / "cls.ckpt")


def test_truncated_and_malformed_files(tmp_path):
    sd = _state_dict()
    ckpt = _lightning_ckpt(tmp_path / "t.ckpt", sd, tmp_path / "pwned")
    data = ckpt.read_bytes()
    (tmp_path / "half.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"Cannot read .*half.ckpt.*torch >= 1.6 or a .safetensors"):
        read_state_dict(tmp_path / "half.ckpt")
    (tmp_path / "text.ckpt").write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    with pytest.raises(WeightsError, match=r"Cannot read .*text.ckpt"):
        read_state_dict(tmp_path / "text.ckpt")
    # A tensor record missing from an otherwise intact zip: the restricted loader names it.
    _rewrite_zip(ckpt, tmp_path / "hole.ckpt", {"data/1": None})
    with pytest.raises(
        WeightsError, match=r"safely .*tensor record 1 is missing or malformed.*\.safetensors"
    ):
        read_state_dict(tmp_path / "hole.ckpt")
    _rewrite_zip(ckpt, tmp_path / "short.ckpt", {"data/0": b"\0" * 8})
    with pytest.raises(WeightsError, match=r"tensor record 0 is missing or malformed"):
        read_state_dict(tmp_path / "short.ckpt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "not weights")
    with pytest.raises(WeightsError, match="Cannot read .*other.zip"):
        read_state_dict(tmp_path / "other.zip")
    with pytest.raises(WeightsError, match="zip file but not a torch checkpoint"):
        _restricted_torch_load(tmp_path / "other.zip")
    assert not (tmp_path / "pwned").exists()

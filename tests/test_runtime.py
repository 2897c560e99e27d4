"""loading/runtime.py: device and quantization names resolved, with messages that name the fix."""

from __future__ import annotations

import pytest
import torch

from llmcxr_app.loading.runtime import resolve_device, resolve_quantization


def test_resolve_device_and_quantization():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_quantization("auto", "cpu") == "fp32"
    assert resolve_quantization("BF16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="Unknown quantization 'fp8'.*nf4"):
        resolve_quantization("fp8", "cpu")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("gpu0")
    if torch.cuda.is_available():
        assert resolve_quantization("auto", "auto") == "nf4"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_four_bit_on_cpu_warns_but_is_allowed():
    with pytest.warns(UserWarning, match="much slower than fp32"):
        assert resolve_quantization("nf4", "cpu") == "nf4"

"""ZeroGPU support: `@gpu(duration)` is `spaces.GPU(duration=...)` on a ZeroGPU Space and a no-op elsewhere.

ZeroGPU Spaces set SPACES_ZERO_GPU=true (the variable the `spaces` package itself reads). Only there is
`spaces` imported at all, and then at the import of this module, because it must patch torch before anything
initialises CUDA: app.py imports this module before torch. Off ZeroGPU nothing here imports `spaces`, torch
or gradio, so the module loads on any machine.

What ZeroGPU changes for a decorated handler (spaces 0.51): it runs in a forked worker holding the GPU for at
most ``duration`` seconds; its arguments and every value it yields are pickled across the process boundary
(pass strings, PIL images, lists and dicts, never a Studio, a threading.Event or an open file); state it
changes in module globals does not come back; generator functions stay generators, so streaming works.
torch.compile is unsupported there, and the GPU exists only inside decorated functions (no start-up warmup).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

ENV = "SPACES_ZERO_GPU"  # set to "true" by Hugging Face on ZeroGPU hardware
DEFAULT_DURATION = (
    120  # seconds a request may hold the GPU: a 512-token report or a 256-token image with margin
)

F = TypeVar("F", bound=Callable[..., Any])


def on_zerogpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (same test as `spaces.config`)."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "t", "true")


def gpu(duration: int | Callable[..., int] = DEFAULT_DURATION) -> Callable[[F], F]:
    """Decorator for a function that runs the model.

    ``duration``: seconds of GPU the call may hold on ZeroGPU (shorter gets queued sooner), or a function of
    the same arguments returning them. Off ZeroGPU the function is returned unchanged, not wrapped.
    """

    def decorate(fn: F) -> F:
        if not on_zerogpu():
            return fn
        import spaces

        return spaces.GPU(duration=duration)(fn)

    return decorate


if on_zerogpu():  # pragma: no cover - only on Hugging Face's ZeroGPU hardware
    import spaces  # noqa: F401  (patches torch's CUDA entry points; must precede any CUDA use)

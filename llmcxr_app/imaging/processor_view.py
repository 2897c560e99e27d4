"""What an adapter model's vision tower sees: a CLIP-style image processor's input, undone and located.

A Hugging Face CLIP/LLaVA image processor may pad the image to a square, resizes it (shortest edge, or a
fixed height x width), centre-crops it and normalises it. ``tower_view`` turns the processed pixel_values
back into the RGB picture the tower receives, and ``crop_box`` says which part of the original image that
picture covers. Reads the processor's settings only (duck-typed), so nothing here imports transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


def _get(processor: Any, name: str, default: Any = None) -> Any:
    value = getattr(processor, name, default)
    return default if value is None else value


def _size(value: Any, key: str) -> int | None:
    """A size field of a processor setting, whether a dict or a SizeDict."""
    if isinstance(value, dict):
        found = value.get(key)
    else:
        found = getattr(value, key, None)
    return None if found is None else int(found)


def _resized(processor: Any, width: int, height: int) -> tuple[int, int]:
    """(width, height) after the processor's resize step (transformers' rounding: int() of the long side)."""
    if not _get(processor, "do_resize", True):
        return width, height
    size = _get(processor, "size", {})
    short = _size(size, "shortest_edge")
    if short:
        if width <= height:
            return short, int(short * height / width)
        return int(short * width / height), short
    h, w = _size(size, "height"), _size(size, "width")
    return (w or width), (h or height)


def crop_box(processor: Any, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in the original image's pixels of the square the tower receives.

    ``width`` x ``height``: the original image. With padding to a square (LLaVA's do_pad) the box extends
    past the image on the short side, where the tower sees the padding colour.
    """
    pad_left = pad_top = 0.0
    frame_w, frame_h = width, height
    if _get(processor, "do_pad", False):
        side = max(width, height)
        pad_left, pad_top = (side - width) // 2, (side - height) // 2
        frame_w = frame_h = side
    new_w, new_h = _resized(processor, frame_w, frame_h)
    left, top, right, bottom = 0, 0, new_w, new_h
    crop = _get(processor, "crop_size", {})
    crop_h, crop_w = _size(crop, "height"), _size(crop, "width")
    if _get(processor, "do_center_crop", False) and crop_h and crop_w:
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        right, bottom = left + crop_w, top + crop_h
    sx, sy = frame_w / new_w, frame_h / new_h
    return (left * sx - pad_left, top * sy - pad_top, right * sx - pad_left, bottom * sy - pad_top)


def tower_view(processor: Any, pixel_values: torch.Tensor) -> Image.Image:
    """The RGB picture the vision tower receives: pixel_values [1, 3, H, W] (normalised) un-normalised."""
    values = pixel_values[0].detach().to("cpu", torch.float32).numpy()
    if _get(processor, "do_normalize", True):
        mean = np.asarray(_get(processor, "image_mean", [0.0, 0.0, 0.0]), dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(_get(processor, "image_std", [1.0, 1.0, 1.0]), dtype=np.float32).reshape(-1, 1, 1)
        values = values * std + mean
    if _get(processor, "do_rescale", True):
        values = values / float(_get(processor, "rescale_factor", 1 / 255))
    pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(pixels, "RGB")

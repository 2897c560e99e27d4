"""Synthetic frontal (PA) chest radiograph phantoms with known findings, for the embedded demo model.

Radiological convention throughout: the image is viewed as if facing the patient, so the patient's RIGHT
is on the IMAGE LEFT (small column indices) and the patient's left is on the image right. Sides in
`Findings` are the patient's sides ("right effusion" = opacity in the image-left lung base), the heart
bulges to the image right, the right hemidiaphragm (image left) sits slightly higher, and a left chest wall
pacemaker is drawn in the image-right upper zone.

Geometry is written in canonical image fractions (x, y in [0, 1], y down) and rendered by evaluating
smooth signed-distance-like fields on the pixel grid with numpy: ~10 ms per 256-px phantom on one core.
Anatomy (jitter, noise fields) depends only on `anatomy_seed`, so `render(f1, s)` and `render(f2, s)` differ
only where the findings differ: that is what the tests use to check each finding's region.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from llmcxr_app.demo.data.findings import (
    EFFUSION_SIDES,
    EFFUSION_SIZES,
    LABELS,
    SIDES,
    ZONES,
    Findings,
    sample_findings,
)
from llmcxr_app.demo.data.reports import write_report

# Findings and its constants live in findings.py (reports.py reads them too); re-exported for callers.
__all__ = [
    "EFFUSION_SIDES",
    "EFFUSION_SIZES",
    "LABELS",
    "SIDES",
    "ZONES",
    "Findings",
    "Phantom",
    "make_phantom",
    "render",
    "sample_findings",
]


@dataclass(frozen=True)
class Anatomy:
    """Per-patient variation, kept modest so a tiny model can learn the findings, not the anatomy."""

    scale: float  # zoom of the whole chest about the image centre (1 = canonical)
    dx: float  # horizontal shift, image fractions
    dy: float  # vertical shift, image fractions
    brightness: float  # global exposure multiplier
    lung_width: float  # multiplier of the lung half-widths
    dome_right: float  # y of the right costophrenic angle (image left); the left one is ~0.025 lower
    ctr_normal: float  # cardiothoracic ratio used when there is no cardiomegaly
    ctr_large: float  # cardiothoracic ratio used with cardiomegaly
    rib_phase: float  # vertical offset of the rib pattern, in rib periods


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    u = rng.random(9)
    return Anatomy(
        scale=0.97 + 0.06 * u[0],
        dx=-0.015 + 0.03 * u[1],
        dy=-0.015 + 0.03 * u[2],
        brightness=0.93 + 0.12 * u[3],
        lung_width=0.97 + 0.06 * u[4],
        dome_right=0.765 + 0.03 * u[5],
        ctr_normal=0.39 + 0.04 * u[6],
        ctr_large=0.56 + 0.04 * u[7],
        rib_phase=float(u[8]),
    )


@dataclass(frozen=True)
class Phantom:
    image: Image.Image  # PIL "L", size x size, patient's right on the image left
    findings: Findings  # ground truth
    report: str  # "FINDINGS: ... IMPRESSION: ..." written from `findings`
    seed: int  # make_phantom(seed) reproduces this phantom


# Canonical layout (image fractions). u = |x - 0.5|, the distance from the midline towards a lateral wall;
# both lungs share one shape, mirrored, so most fields are computed once for the whole frame.
_LUNG_UC, _LUNG_RX, _LUNG_YC, _LUNG_RY = 0.195, 0.17, 0.62, 0.50  # lung ellipse (before the dome cut)
_MED_HALF = 0.058  # half-width of the upper mediastinum at the lung apices
_CARINA_Y = 0.37
_LEFT_DOME_DROP = 0.025  # the left hemidiaphragm sits lower than the right
_EDGE = 0.010  # softness of anatomical edges (image fractions); radiographs have no hard edges


def _soft(f: np.ndarray, w: float = _EDGE) -> np.ndarray:
    """Soft inside-mask of a signed field f (negative inside), ramp width w."""
    return np.clip(0.5 - f / w, 0.0, 1.0)


def _dome_y(u: np.ndarray, cp: np.ndarray | float) -> np.ndarray:
    """y of the diaphragm under a lung: highest mid-lung, down to the costophrenic angle `cp`."""
    return cp - 0.09 * (1.0 - np.minimum(((u - 0.17) / 0.2) ** 2, 1.0))


def _lung_field(u: np.ndarray, y: np.ndarray, cp: np.ndarray | float, a: Anatomy) -> np.ndarray:
    """Signed field of a lung (negative inside, ~distance): ellipse cut by the dome and the mediastinum."""
    rx, uc = _LUNG_RX * a.lung_width, _LUNG_UC * a.lung_width
    ell = (np.sqrt(((u - uc) / rx) ** 2 + ((y - _LUNG_YC) / _LUNG_RY) ** 2) - 1.0) * rx
    return np.maximum(np.maximum(ell, y - _dome_y(u, cp)), _MED_HALF - u)


def _upsample(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """Smooth noise field: a cells x cells normal grid, bicubic-resized to size x size (float32)."""
    low = rng.standard_normal((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(low, "F").resize((size, size), Image.BICUBIC))


def _to_image_xy(a: Anatomy, x: float, y: float, size: int) -> tuple[float, float]:
    """Canonical fractions -> pixel coordinates, applying the anatomy's zoom and shift."""
    return ((x - 0.5) * a.scale + 0.5 + a.dx) * size, ((y - 0.5) * a.scale + 0.5 + a.dy) * size


def _row(a: Anatomy, y: float, size: int) -> int:
    """Image row of canonical height y, clamped to the image (for fields that touch only a band of rows)."""
    return min(max(int(((y - 0.5) * a.scale + 0.5 + a.dy) * size), 0), size)


@dataclass(frozen=True)
class _Frame:
    """One phantom's pixel grid in canonical coordinates, with its anatomy and noise fields."""

    a: Anatomy  # the patient's variation
    size: int  # image side in pixels
    smooth: np.ndarray  # (H, W) exposure / soft-tissue thickness variation
    wiggle: np.ndarray  # (H, W) phase noise of the vascular markings
    fluff: np.ndarray  # (H, W) texture of consolidation
    grain: np.ndarray  # (H, W) quantum mottle
    y: np.ndarray  # (H, 1) canonical y of each row
    d: np.ndarray  # (1, W) canonical x - 0.5: negative = image left = patient's right
    u: np.ndarray  # (1, W) |d|
    cols: dict[str, slice]  # image columns of the patient's "right" and "left" hemithorax
    cp: np.ndarray  # (1, W) costophrenic angle y under each column


def _frame(anatomy_seed: int, size: int) -> _Frame:
    rng = np.random.default_rng([anatomy_seed, 0x5EED])
    a = sample_anatomy(rng)
    # All noise is drawn before looking at the findings, so the anatomy is identical across findings.
    smooth = _upsample(rng, 6, size)
    wiggle = _upsample(rng, 8, size)
    fluff = _upsample(rng, 16, size)
    grain = rng.random((size, size), dtype=np.float32) - 0.5  # uniform: 3x cheaper than normal
    pix = (np.arange(size, dtype=np.float32) + 0.5) / size
    x = ((pix - 0.5 - a.dx) / a.scale + 0.5)[None, :]  # canonical coords, (1, W)
    y = ((pix - 0.5 - a.dy) / a.scale + 0.5)[:, None]  # (H, 1)
    d = x - 0.5
    n_right = int((d < 0).sum())  # image columns [0, n_right) show the patient's right hemithorax
    cols = {"right": slice(0, n_right), "left": slice(n_right, size)}
    cp = np.where(d < 0, a.dome_right, a.dome_right + _LEFT_DOME_DROP)
    return _Frame(a, size, smooth, wiggle, fluff, grain, y, d, np.abs(d), cols, cp)


def _body(f: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """(body mask, soft-tissue density): torso slightly barrel-shaped, shoulders sloping into the neck."""
    u, y = f.u, f.y
    shoulder = 0.035 * np.clip((u - 0.08) / 0.03, 0, 1) + 0.09 * np.clip((u - 0.11) / 0.34, 0, 1) ** 1.5
    body = _soft(np.maximum(u - (0.445 - 0.05 * ((y - 0.55) / 0.5) ** 2), shoulder - y), 0.02)
    # Chest wall seen tangentially at the margins is thicker, hence brighter; liver/spleen under the domes.
    tissue = 0.40 + 0.08 * y + 0.03 * f.smooth + 0.08 * (u / 0.45) ** 4
    tissue = tissue + 0.10 * _soft(_dome_y(u, f.cp) - y, 0.02)
    return body, tissue


def _heart(f: _Frame, findings: Findings) -> tuple[np.ndarray, np.ndarray, float]:
    """(heart, mediastinum, heart half-width): one third right of the midline, apex to the patient's left."""
    a, d, u, y = f.a, f.d, f.u, f.y
    ctr = a.ctr_large if findings.cardiomegaly else a.ctr_normal
    hw = ctr * (_LUNG_UC + _LUNG_RX) * a.lung_width  # half-width: ctr * thoracic width / 2
    hy, hry = (0.69, 0.19) if findings.cardiomegaly else (0.70, 0.17)  # lower part hides in the domes
    hd = d - hw / 3 - 0.4 * (y - hy)
    heart = _soft((np.sqrt((hd / hw) ** 2 + ((y - hy) / hry) ** 2) - 1) * hry)
    medi = np.maximum(heart, _soft(np.maximum(u - (_MED_HALF + 0.02 * y), y - 0.66)))
    r0, r1 = _row(a, 0.25, f.size), _row(a, 0.37, f.size) + 1  # the aortic knob only touches these rows
    knob = _soft(np.sqrt((d - 0.06) ** 2 + (y[r0:r1] - 0.31) ** 2) - 0.038)
    medi[r0:r1] = np.maximum(medi[r0:r1], knob)
    return heart, medi, hw


def _lungs(
    f: _Frame, findings: Findings, body: np.ndarray, tissue: np.ndarray, medi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image so far, lung mask, air, vascular markings): the soft tissue with the aerated lungs cut out."""
    u, y = f.u, f.y
    img = 0.04 + (tissue - 0.04) * body
    lung = _soft(_lung_field(u, y, f.cp, f.a)) * body
    air = lung * (1 - medi)
    # Vascular markings: thin wiggly spokes radiating from each hilum, fading to the periphery.
    # tan(angle / 2) = dy / (dx + r) stands in for the angle (arctan2 costs ~1 ms per frame).
    hx = np.abs(u - 0.07)
    rad2 = hx**2 + (y - 0.47) ** 2
    rad = np.sqrt(rad2)
    spokes = 0.5 + 0.5 * np.cos(28 * (y - 0.47) / (hx + rad + 1e-3) + 4.0 * f.wiggle)
    spokes = spokes * spokes
    spokes = spokes * spokes * spokes  # ^6 by multiplication: float pow is ~50x slower
    markings = spokes / (1 + rad2 / 0.025) * np.clip((rad - 0.03) / 0.05, 0, 1)
    markings *= 0.09 if findings.edema else 0.06
    img = img - air * (0.28 - markings - 0.025 * f.smooth)
    return img, lung, air, markings


def _pneumothorax(f: _Frame, side: str, img: np.ndarray, air: np.ndarray, markings: np.ndarray) -> None:
    """The lung shrinks towards its medial base, leaving a lucent pleural space without markings, bounded
    by the thin visceral pleural line (drawn into `img` in place)."""
    c = f.cols[side]
    k, ua, ya = 0.66, 0.06, 0.74
    cf = _lung_field(ua + (f.u[:, c] - ua) / k, ya + (f.y - ya) / k, f.cp[:, c], f.a)
    gap = air[:, c] * (1 - _soft(cf, 0.004))
    img[:, c] -= gap * (0.10 + markings[:, c] - 0.025 * f.smooth[:, c])
    img[:, c] += air[:, c] * (0.08 * _soft(cf) + 0.28 * np.exp(-((cf / 0.004) ** 2)))


def _consolidation(f: _Frame, zone: str, img: np.ndarray, lung: np.ndarray) -> None:
    """A fluffy opacity in one lung zone (drawn into `img` in place)."""
    s, level = zone.split()
    c = f.cols[s]
    cu = 0.25 if (s, level) == ("left", "lower") else 0.21  # lateral to the heart
    cy = 0.34 if level == "upper" else 0.58
    blob = np.exp(-((f.u[:, c] - cu) ** 2 + (f.y - cy) ** 2) / 0.08**2) * (1 + 0.3 * f.fluff[:, c])
    img[:, c] += 0.34 * np.clip((blob - 0.25) / 0.25, 0, 1) * lung[:, c]


def _edema(f: _Frame, img: np.ndarray, air: np.ndarray) -> np.ndarray:
    """Bat-wing perihilar haze + Kerley B lines at the lateral bases."""
    u, y = f.u, f.y
    batwing = np.exp(-(((u - 0.11) / 0.11) ** 2) - ((y - 0.48) / 0.15) ** 2)
    kerley = (0.5 + 0.5 * np.cos(2 * np.pi * y / 0.03)) ** 6 * np.clip((y - 0.5) / 0.05, 0, 1)
    return img + air * (0.30 * batwing + 0.05 + 0.14 * kerley * np.clip((u - 0.29) / 0.02, 0, 1))


def _effusion(
    f: _Frame, findings: Findings, img: np.ndarray, lung: np.ndarray, heart: np.ndarray, air
) -> None:
    """Homogeneous fluid filling the base, obliterating the dome and the costophrenic angle, with a
    meniscus climbing the lateral wall (drawn into `img` in place; `air` loses its contrast behind it)."""
    frac = 0.18 if findings.effusion_size == "small" else 0.40
    for s in ("left", "right") if findings.effusion == "bilateral" else (findings.effusion,):
        c = f.cols[s]
        lat = np.clip((f.u[:, c] - _MED_HALF) / (0.36 * f.a.lung_width - _MED_HALF), 0, 1)
        level = f.cp[:, c] + 0.01 - frac * (f.cp[:, c] - 0.12) - 0.06 * lat**2
        fluid = lung[:, c] * _soft(level - f.y, 0.012) * (1 - heart[:, c])
        img[:, c] += fluid * np.maximum(0.60 + 0.03 * f.smooth[:, c] - img[:, c], 0)
        air[:, c] *= 1 - fluid  # ribs lose their air contrast behind the fluid


def _bones(f: _Frame, air: np.ndarray) -> np.ndarray:
    """Spine with vertebral bodies, posterior ribs (curving down laterally), clavicles, and the air of the
    trachea and main bronchi over the mediastinum (negative)."""
    a, u, y, size = f.a, f.u, f.y, f.size
    vert = 0.8 + 0.2 * (0.5 + 0.5 * np.cos(2 * np.pi * y / 0.045)) ** 2
    bone = 0.07 * _soft(u - 0.035, 0.008) * vert
    # cos(py + pu) from 1-D cosines and sines: the phase is a sum of a row term and a column term.
    py, pu = 2 * np.pi * (y / 0.068 + a.rib_phase), 2 * np.pi * (0.06 * u - 0.7 * u**2) / 0.068
    band = 0.5 + 0.5 * (np.cos(py) * np.cos(pu) - np.sin(py) * np.sin(pu))
    band = band * band
    region = np.clip((1.25 - ((u - 0.2) / 0.2) ** 2 - ((y - 0.5) / 0.4) ** 2) / 0.5, 0, 1)
    bone = bone + 0.07 * band * band * band * region * np.clip((u - 0.04) / 0.03, 0, 1) * (0.3 + 0.7 * air)
    clav_y = 0.20 - 0.35 * (u - 0.04) + 0.4 * (u - 0.15) ** 2  # (1, W)
    r1 = _row(a, 0.26, size)
    bone[:r1] += 0.16 * _soft(np.abs(y[:r1] - clav_y) - 0.013, 0.008) * _soft(np.abs(u - 0.2) - 0.16, 0.02)
    r0, r1 = _row(a, _CARINA_Y, size), _row(a, _CARINA_Y + 0.07, size)
    bone[:r1] -= 0.08 * _soft(np.maximum(u - 0.02, y[:r1] - _CARINA_Y), 0.006)
    t = np.clip((y[r0:r1] - _CARINA_Y) / 0.06, 0, 1)
    bronchi = _soft(np.abs(u - (0.01 + 0.07 * t)) - 0.014, 0.006) * (t > 0) * (t < 1)
    bone[r0:r1] -= 0.08 * bronchi * (y[r0:r1] > _CARINA_Y + 0.006)
    return bone


def _devices(f: _Frame, findings: Findings, img: np.ndarray, hw: float) -> Image.Image:
    """Support devices in metal, drawn on top with sharp edges; returns the finished 8-bit image."""
    a, u, y, size = f.a, f.u, f.y, f.size
    r1 = _row(a, 0.4, size)  # the tube and the generator stay above canonical y = 0.4
    top = img[:r1]
    if findings.ett:
        tip = _CARINA_Y - 0.06
        np.maximum(top, 0.88 * _soft(np.maximum(u - 0.0075, y[:r1] - tip), 0.003), out=top)
        np.maximum(
            top, 0.97 * _soft(np.maximum(u - 0.011, np.abs(y[:r1] - tip + 0.008) - 0.008), 0.003), out=top
        )
    if findings.pacemaker:
        qx, qy = np.maximum(np.abs(f.d - 0.26) - 0.043, 0), np.maximum(np.abs(y[:r1] - 0.2) - 0.024, 0)
        np.maximum(top, 0.97 * _soft(np.sqrt(qx**2 + qy**2) - 0.012, 0.004), out=top)
    img = np.clip(img * a.brightness, 0, 1)
    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "L")
    if findings.pacemaker:
        # Lead: a Bezier curve from the generator through the SVC and right atrium to the RV apex.
        ctrl = np.array([(0.71, 0.21), (0.46, 0.22), (0.44, 0.52), (0.5 + 0.9 * hw, 0.72)])
        t = np.linspace(0, 1, 40)[:, None]
        curve = (
            (1 - t) ** 3 * ctrl[0]
            + 3 * t * (1 - t) ** 2 * ctrl[1]
            + 3 * t**2 * (1 - t) * ctrl[2]
            + t**3 * ctrl[3]
        )
        pts = [_to_image_xy(a, float(lx), float(ly), size) for lx, ly in curve]
        ImageDraw.Draw(out).line(
            pts, fill=int(235 * min(a.brightness, 1.0)), width=max(2, round(0.009 * size))
        )
    return out


def render(findings: Findings, anatomy_seed: int, size: int = 256) -> Image.Image:
    """Draw a PA chest phantom: PIL "L" image, size x size, 0 = air outside the body, 255 = metal.

    The anatomy depends only on `anatomy_seed`; `findings` only adds its own changes on top.
    """
    f = _frame(anatomy_seed, size)
    body, tissue = _body(f)
    heart, medi, hw = _heart(f, findings)
    img, lung, air, markings = _lungs(f, findings, body, tissue, medi)
    if findings.pneumothorax != "none":
        _pneumothorax(f, findings.pneumothorax, img, air, markings)
    if findings.consolidation != "none":
        _consolidation(f, findings.consolidation, img, lung)
    if findings.edema:
        img = _edema(f, img, air)
    if findings.effusion != "none":
        _effusion(f, findings, img, lung, heart, air)
    img = img + _bones(f, air) * body + 0.042 * f.grain
    return _devices(f, findings, img, hw)


def make_phantom(seed: int, size: int = 256) -> Phantom:
    """The phantom of `seed` (deterministic): findings, image and a report written from the findings."""
    rng = np.random.default_rng([seed, 0xF1D])
    findings = sample_findings(rng)
    report = write_report(findings, rng)
    return Phantom(image=render(findings, seed, size), findings=findings, report=report, seed=seed)


def main() -> None:
    p = argparse.ArgumentParser(description="Write example phantoms (PNG + report) to a folder.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        ph = make_phantom(seed, args.size)
        ph.image.save(args.out / f"phantom_{seed:05d}.png")
        (args.out / f"phantom_{seed:05d}.txt").write_text(ph.report + "\n")
        print(seed, {f.name: getattr(ph.findings, f.name) for f in fields(ph.findings)})


if __name__ == "__main__":
    main()

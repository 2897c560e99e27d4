"""Phantom generator: determinism, priors, and that each finding changes the image where it should.

Regions are image fractions (x = column, y = row); the patient's right is on the IMAGE LEFT. Each finding
is checked against the same anatomy rendered without it (`render(Findings(), seed)`), so the differences
come from the finding alone.
"""

import time

import numpy as np
import pytest

from llmcxr_app.demo.data.phantoms import LABELS, Findings, Phantom, make_phantom, render, sample_findings

NORMAL = Findings()
SEEDS = range(6)


def _arr(findings: Findings, seed: int, size: int = 256) -> np.ndarray:
    return np.asarray(render(findings, seed, size), dtype=np.float32)


def _box(a: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> float:
    n = a.shape[0]
    return float(a[int(y0 * n) : int(y1 * n), int(x0 * n) : int(x1 * n)].mean())


def _delta(findings: Findings, box: tuple[float, float, float, float], seed: int) -> float:
    """Mean grey-level change in `box` caused by `findings` on the anatomy of `seed`."""
    return _box(_arr(findings, seed), *box) - _box(_arr(NORMAL, seed), *box)


def _mirror(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = box
    return 1 - x1, 1 - x0, y0, y1


def test_make_phantom_is_deterministic_and_seeds_differ():
    a, b, c = make_phantom(7), make_phantom(7), make_phantom(8)
    assert isinstance(a, Phantom) and a.image.mode == "L" and a.image.size == (256, 256)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.findings == b.findings and a.report == b.report
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert make_phantom(7, size=128).image.size == (128, 128)
    assert make_phantom(7, size=128).findings == a.findings


def test_anatomy_does_not_depend_on_findings():
    """Pixels away from the lungs, heart and devices do not move when the findings change."""
    a, b = _arr(NORMAL, 3), _arr(Findings(effusion="left", effusion_size="large", edema=True), 3)
    assert np.array_equal(a[:, :25], b[:, :25])  # image-left edge: chest wall and background only
    assert np.abs(a - b).max() > 50


def test_findings_validation():
    with pytest.raises(ValueError):
        Findings(effusion="left")  # size missing
    with pytest.raises(ValueError):
        Findings(effusion_size="small")
    with pytest.raises(ValueError):
        Findings(pneumothorax="bilateral")
    with pytest.raises(ValueError):
        Findings(consolidation="right middle")
    f = Findings(effusion="bilateral", effusion_size="large", ett=True)
    assert tuple(f.label_vector()) == LABELS
    assert f.label_vector() == {
        "cardiomegaly": False,
        "effusion": True,
        "pneumothorax": False,
        "consolidation": False,
        "edema": False,
        "ett": True,
        "pacemaker": False,
    }
    assert f.attributes() == {
        "effusion_side": "bilateral",
        "effusion_size": "large",
        "pneumothorax_side": "none",
        "consolidation_zone": "none",
    }


def test_sample_findings_prior():
    rng = np.random.default_rng(0)
    draws = [sample_findings(rng) for _ in range(4000)]
    counts = np.array([[v for v in f.label_vector().values()] for f in draws])
    n_pos = counts.sum(1)
    assert 0.21 < (n_pos == 0).mean() < 0.29
    assert n_pos.max() == 3 and {1, 2, 3} <= set(n_pos.tolist())
    assert np.all((counts.mean(0) > 0.15) & (counts.mean(0) < 0.35)), counts.mean(0)
    assert {f.effusion for f in draws} == {"none", "left", "right", "bilateral"}
    assert {f.effusion_size for f in draws} == {"none", "small", "large"}
    assert len({f.consolidation for f in draws}) == 5 and {f.pneumothorax for f in draws} == {
        "none",
        "left",
        "right",
    }


@pytest.mark.parametrize("side", ["right", "left"])
def test_effusion_fills_the_base_of_its_side(side):
    base = (0.15, 0.28, 0.67, 0.74)  # image-left lung base = patient's right
    higher = (0.15, 0.28, 0.55, 0.61)  # reached only by a large effusion
    if side == "left":
        base, higher = _mirror(base), _mirror(higher)
    for seed in SEEDS[:3]:
        small = Findings(effusion=side, effusion_size="small")
        large = Findings(effusion=side, effusion_size="large")
        assert _delta(small, base, seed) > 30
        assert _delta(large, higher, seed) > 60
        assert abs(_delta(small, higher, seed)) < 8
        assert _delta(small, _mirror(base), seed) == 0  # the other side is untouched
    both = Findings(effusion="bilateral", effusion_size="small")
    assert _delta(both, base, 0) > 30 and _delta(both, _mirror(base), 0) > 30


@pytest.mark.parametrize("side", ["right", "left"])
def test_pneumothorax_darkens_lateral_and_apical_space(side):
    lateral, apex, medial = (0.15, 0.22, 0.25, 0.45), (0.22, 0.34, 0.16, 0.24), (0.32, 0.40, 0.50, 0.60)
    if side == "left":
        lateral, apex, medial = _mirror(lateral), _mirror(apex), _mirror(medial)
    for seed in SEEDS[:3]:
        f = Findings(pneumothorax=side)
        assert _delta(f, lateral, seed) < -7
        assert _delta(f, apex, seed) < -7
        assert _delta(f, _mirror(lateral), seed) == 0
        assert _delta(f, medial, seed) > 8  # the collapsed lung, denser than when aerated


@pytest.mark.parametrize("zone", ["right upper", "right lower", "left upper", "left lower"])
def test_consolidation_brightens_its_zone_only(zone):
    side, level = zone.split()
    x = (0.26, 0.33) if side == "right" else (0.67, 0.74)
    boxes = {"upper": (*x, 0.30, 0.38), "lower": (*x, 0.54, 0.62)}
    other = "lower" if level == "upper" else "upper"
    for seed in SEEDS[:3]:
        f = Findings(consolidation=zone)
        assert _delta(f, boxes[level], seed) > 40
        assert abs(_delta(f, boxes[other], seed)) < 3
        assert _delta(f, _mirror(boxes[level]), seed) == 0


def test_edema_is_bilateral_perihilar():
    for seed in SEEDS[:3]:
        f = Findings(edema=True)
        assert _delta(f, (0.28, 0.38, 0.42, 0.54), seed) > 30
        assert _delta(f, (0.62, 0.72, 0.42, 0.54), seed) > 30


def _cardiothoracic_ratio(img: np.ndarray) -> float:
    """Independent reader: heart width / inner thoracic width on a median row profile over the heart."""
    n = img.shape[0]
    prof = np.median(img[int(0.60 * n) : int(0.70 * n)], axis=0)
    thr = (np.percentile(prof, 10) + prof[int(0.47 * n) : int(0.55 * n)].mean()) / 2
    dark = prof < thr
    left = right = int(0.52 * n)
    while left > 0 and not dark[left - 1]:
        left -= 1
    while right < n - 1 and not dark[right + 1]:
        right += 1
    bright = np.flatnonzero(~dark)
    lung = np.flatnonzero(dark[bright[0] : bright[-1] + 1])  # dark pixels inside the chest wall
    return (right - left + 1) / (lung[-1] - lung[0] + 1)


def test_cardiomegaly_widens_the_heart():
    for seed in range(8):
        normal = _cardiothoracic_ratio(_arr(NORMAL, seed))
        large = _cardiothoracic_ratio(_arr(Findings(cardiomegaly=True), seed))
        assert 0.33 < normal < 0.48 and large > 0.52 and large - normal > 0.1, (seed, normal, large)


def test_devices_are_bright_and_on_the_right_side():
    for seed in SEEDS[:3]:
        ett, none = _arr(Findings(ett=True), seed), _arr(NORMAL, seed)
        band = np.s_[int(0.10 * 256) : int(0.25 * 256), int(0.44 * 256) : int(0.56 * 256)]
        assert ett[band].mean(0).max() > 200 and none[band].mean(0).max() < 180  # midline tube
        pm = Findings(pacemaker=True)
        # Left chest wall generator: image RIGHT upper zone (radiological convention).
        assert _delta(pm, (0.72, 0.80, 0.18, 0.22), seed) > 100
        assert _delta(pm, (0.20, 0.28, 0.18, 0.22), seed) == 0
        # The lead reaches the heart: something bright was added in the lower mediastinum.
        assert (_arr(pm, seed) - none)[int(0.4 * 256) : int(0.7 * 256)].max() > 80


def test_findings_survive_downsampling_to_128():
    """The demo VQ-GAN sees 128 px with 8-px cells: each finding must still move whole cells."""
    for f in (
        Findings(effusion="right", effusion_size="small"),
        Findings(pneumothorax="left"),
        Findings(consolidation="left upper"),
        Findings(ett=True),
        Findings(edema=True),
    ):
        a = _arr(f, 1).reshape(16, 16, 16, 16).mean((1, 3))  # 256 px -> 16x16 grid of 16-px cells
        b = _arr(NORMAL, 1).reshape(16, 16, 16, 16).mean((1, 3))
        assert (np.abs(a - b) > 8).sum() >= 2, f


def test_render_speed_smoke():
    """Not a timed assert (shared CI cores); prints the figure for the record."""
    everything = Findings(True, "bilateral", "large", "left", "right upper", True, True, True)
    render(everything, 0)
    t0 = time.perf_counter()
    for seed in range(10):
        render(everything if seed % 2 else NORMAL, seed)
    print(f"render: {(time.perf_counter() - t0) / 10 * 1000:.1f} ms per 256-px phantom")

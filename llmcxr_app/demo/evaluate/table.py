"""The human-readable summary of an evaluation record (evaluation.py's result), printed without --json.

Parts a model does not have (drawing, the VQ-GAN's reconstruction and the reader, for the adapter family)
are left out of the table.
"""

from __future__ import annotations

from llmcxr_app.demo.data.phantoms import LABELS


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def table(res: dict) -> str:
    """The human-readable summary printed without --json."""
    m = res["metrics"]
    lines = [
        f"Model: {res['model']['model_name']} ({res['model']['weight_hash']}, {res['model']['device']}, "
        f"{res['model']['quantization']})",
        "",
    ]
    rep = m["report"]
    lines.append(
        f"CXR -> report (greedy, n={rep['n']}): micro P {_fmt(rep['micro']['precision'])} "
        f"R {_fmt(rep['micro']['recall'])} F1 {_fmt(rep['micro']['f1'])}; macro F1 {_fmt(rep['macro_f1'])}"
    )
    lines.append(f"  {'finding':<15}{'prec':>8}{'recall':>8}{'F1':>8}{'support':>9}")
    for lab, v in rep["per_label"].items():
        lines.append(
            f"  {lab:<15}{_fmt(v['precision']):>8}{_fmt(v['recall']):>8}{_fmt(v['f1']):>8}{v['support']:>9}"
        )
    for k, v in rep["attributes"].items():
        lines.append(f"  {k:<22} accuracy {_fmt(v['accuracy'])} (n={v['n']})")
    vqa = m["vqa"]
    kinds = ", ".join(f"{k} {_fmt(v['accuracy'])} (n={v['n']})" for k, v in vqa["by_kind"].items())
    lines += ["", f"VQA (greedy, n={vqa['n']}): accuracy {_fmt(vqa['accuracy'])}; {kinds}"]
    if "draw" in m:
        lines += _draw_lines(m)
    tm = res["timings"]
    lines += ["", "Timings: " + ", ".join(f"{k} {v:.2f}" for k, v in tm.items() if isinstance(v, float)), ""]
    for k, t in res["targets"].items():
        lines.append(f"target {k} >= {t['target']}: {_fmt(t['value'])} {'PASS' if t['pass'] else 'FAIL'}")
    return "\n".join(lines)


def _draw_lines(m: dict) -> list[str]:
    """The report -> CXR, reader and VQ-GAN lines (token family only)."""
    lines: list[str] = []
    d = m["draw"]
    lines += [
        "",
        f"report -> CXR (top_p 0.92, n={d['n']}): valid images {_fmt(d['valid_fraction'])}; reader "
        f"accuracy mean {_fmt(d.get('label_accuracy_mean'))} (all-absent floor "
        f"{_fmt(d['label_accuracy_mean_all_absent'])}), exact match {_fmt(d.get('exact_match'))}",
    ]
    if d.get("first_candidate"):
        fc = d["first_candidate"]
        lines.append(
            f"  best of {d['candidates']} by self-check (read-back agreed on {_fmt(d['self_check_agreed_fraction'])}"
            f" of items); first candidate alone: accuracy mean {_fmt(fc['label_accuracy_mean'])}, exact match "
            f"{_fmt(fc['exact_match'])}"
        )
    r_orig, r_rec = m["reader"]["original"]["label_accuracy"], m["reader"]["reconstruction"]["label_accuracy"]
    lines.append(f"  {'finding':<15}{'generated':>10}{'reader on originals':>21}{'on reconstructions':>20}")
    for lab in LABELS:
        lines.append(
            f"  {lab:<15}{_fmt(d.get('label_accuracy', {}).get(lab)):>10}{_fmt(r_orig[lab]):>21}{_fmt(r_rec[lab]):>20}"
        )
    rc = m["reconstruction"]
    lines += [
        "",
        f"VQ-GAN reconstruction (n={rc['n']}): MAE {rc['mae']:.4f} (pixels in [0, 1]), PSNR {rc['psnr_db']:.2f} dB",
    ]
    return lines

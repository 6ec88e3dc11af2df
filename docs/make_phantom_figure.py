"""Draw docs/phantom_vs_duke.png: a synthetic B-scan beside a real Duke DME B-scan, plus the phantom's labels.

Run from anywhere: ``python docs/make_phantom_figure.py [--seed N] [--real subject06_bscan05]``.
The real image is read from ``../shared/data/duke_dme`` (next to the project root) and is only drawn into
the figure, never copied into the repository. Needs matplotlib (a documentation-only dependency).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DUKE = ROOT.parent / "shared" / "data" / "duke_dme"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.io import imread

    from reseg.classes import OCT_CLASSES
    from reseg.data.phantom import make_oct_phantom
    from reseg.data.spectralis import scan_field_mask

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--real", default="subject06_bscan05", help="Duke image stem to show")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "phantom_vs_duke.png")
    args = ap.parse_args()
    if not DUKE.is_dir():
        raise SystemExit(f"real data not found at {DUKE}; this figure needs ../shared/data/duke_dme")

    ph = make_oct_phantom(n_bscans=8, seed=args.seed, fluid=True)
    k = int(np.clip(round(ph.fovea[0]), 0, ph.image.shape[0] - 1))  # the B-scan through the pit
    syn, lab = ph.image[k], ph.labels[k]
    real = imread(DUKE / "images" / f"{args.real}.png")

    colours = np.array([c.color for c in OCT_CLASSES], dtype=np.float32)
    overlay = (0.45 * syn[..., None] + 0.55 * colours[lab]).astype(np.uint8)

    # Histograms over the whole phantom volume and all Duke images (valid field only).
    reals = [imread(f) for f in sorted(glob.glob(str(DUKE / "images" / "*.png")))]
    real_px = np.concatenate([r[scan_field_mask(r)] for r in reals])
    # The phantom side pools 6 volumes: one volume has one random gain / noise floor, like one real eye.
    syn_px = np.concatenate(
        [ph.image.ravel()]
        + [make_oct_phantom(n_bscans=8, seed=args.seed + i, fluid=True).image.ravel() for i in range(1, 6)]
    )
    q = (5, 25, 50, 75, 95)
    pr, ps = np.percentile(real_px, q), np.percentile(syn_px, q)

    fig, axes = plt.subplots(2, 2, figsize=(12.8, 8.6), dpi=80)
    for ax, img, title in (
        (axes[0, 0], syn, f"synthetic phantom (seed {args.seed}, B-scan {k})"),
        (axes[0, 1], real, f"real Spectralis, Duke DME {args.real}"),
    ):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    axes[1, 0].imshow(overlay, interpolation="nearest")
    axes[1, 0].set_title("phantom labels (OCT_CLASSES colours)", fontsize=11)
    axes[1, 0].axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(c.color) / 255) for c in OCT_CLASSES]
    axes[1, 0].legend(
        handles, [f"{c.index} {c.name}" for c in OCT_CLASSES], fontsize=7, loc="lower left", ncol=2, framealpha=0.8
    )
    ax = axes[1, 1]
    bins = np.arange(257)
    ax.hist(real_px, bins=bins, density=True, histtype="step", color="k", label="Duke DME (88 B-scans)")
    ax.hist(syn_px, bins=bins, density=True, histtype="step", color="tab:red", label="phantom (6 volumes x 8 B-scans)")
    ax.set_yscale("log")
    ax.set_xlabel("display value")
    ax.set_title("intensity histograms (Duke: registration fill excluded)", fontsize=11)
    ax.legend(fontsize=9)
    text = (
        "percentile  "
        + "  ".join(f"{p:>4d}" for p in q)
        + "\nDuke        "
        + "  ".join(f"{v:4.0f}" for v in pr)
        + "\nphantom     "
        + "  ".join(f"{v:4.0f}" for v in ps)
    )
    ax.text(0.3, 0.72, text, transform=ax.transAxes, family="monospace", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB); percentiles {q}: Duke {pr} phantom {ps}")


if __name__ == "__main__":
    main()

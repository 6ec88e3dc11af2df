"""Draw docs/real_scans.png: OCT models segmenting real B-scans none of them trained on, checked by eye.

Row 1: the Spectralis line scan Willis_B_716_0.vol (HSF-OCT-103) with the device's own ILM and BM heights
drawn over each model's labels. Row 2: a Duke DME B-scan of a validation subject with the grader's fluid
outline. One column per model, so the phantom-only version 1 and the bundled model can be set side by side
(the README's figure):

    mkdir -p /tmp/v2
    for f in json safetensors; do git show eaf6639:models/lightreseg-oct.$f > /tmp/v2/lightreseg-oct.$f; done
    python docs/make_real_scan_figure.py --models "version 2=/tmp/v2/lightreseg-oct.json" \
        "bundled (version 3)=lightreseg-oct"

The real images are read from ../shared/data beside the project and only drawn into the figure, never copied
into the repository. Needs matplotlib (a documentation-only dependency).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LINE_SCAN_ROWS, DUKE_ROWS = slice(0, 300), slice(60, 360)  # the retina and what lies around it


def _labelled_models(entries: list[str]) -> list[tuple[str, str]]:
    """`title=model` or `model` → (title, model)."""
    return [tuple(entry.split("=", 1)) if "=" in entry else (entry, entry) for entry in entries]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from reseg.inference.segmentation import segment
    from reseg.io import read_volume
    from reseg.zoo.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lightreseg-oct"], help="[TITLE=]NAME_OR_CARD ...")
    parser.add_argument("--duke", default="subject07_bscan05", help="Duke DME image stem (subjects 07-08 validate)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real_scans.png")
    args = parser.parse_args()
    vol_path = DATA / "spectralis_vol" / "Willis_B_716_0.vol"
    duke_image = DATA / "duke_dme" / "images" / f"{args.duke}.png"
    if not vol_path.is_file() or not duke_image.is_file():
        raise SystemExit(f"this figure needs {vol_path} and {duke_image}")

    line_scan = read_volume(vol_path)
    duke = read_volume(duke_image)
    fluid = read_volume(DATA / "duke_dme" / "fluid" / duke_image.name).data[0] > 0
    heights = line_scan.metadata["boundaries"]
    models = _labelled_models(args.models)
    fig, axes = plt.subplots(2, len(models), figsize=(8.5 * len(models), 7.4), dpi=80, squeeze=False)
    for column, (title, name) in enumerate(models):
        model = load_model(name, device="cpu")
        colours = np.array([c.color for c in model.card.classes], dtype=np.float32)
        scans = ((line_scan, vol_path.name, LINE_SCAN_ROWS), (duke, f"Duke DME {args.duke}", DUKE_ROWS))
        for row, (volume, scan_title, rows) in enumerate(scans):
            image = volume.data[0].astype(np.float32)
            labels = segment(model, volume.data, pixel_spacing=volume.pixel_spacing).labels[0]
            overlay = (0.4 * image[..., None] + 0.6 * colours[labels]).astype(np.uint8)
            ax = axes[row, column]
            ax.imshow(overlay[rows], interpolation="nearest", extent=(0, image.shape[1], rows.stop, rows.start))
            if row == 0:
                columns = np.arange(image.shape[1])
                for boundary, style in (("ILM", "w--"), ("BM", "c--")):
                    ax.plot(columns, heights[boundary][0], style, linewidth=0.9, label=f"device {boundary}")
                ax.legend(fontsize=8, loc="lower right")
            else:
                ax.contour(
                    np.arange(image.shape[1]),
                    np.arange(rows.start, rows.stop),
                    find_boundaries(fluid, mode="inner")[rows],
                    levels=[0.5],
                    colors="white",
                    linewidths=0.8,
                )
            ax.set_title(f"{title}: {scan_title}", fontsize=10)
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(c.color) / 255) for c in model.card.classes]
    fig.legend(handles, [f"{c.index} {c.name}" for c in model.card.classes], fontsize=8, loc="lower center", ncol=5)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

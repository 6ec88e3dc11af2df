"""Pseudo-labels for self-training: a model's confident, layer-ordered labels on the unannotated Duke B-scans.

For each B-scan of the chosen subjects in ``duke_dme/unlabelled/`` (never subjects 07-08, which validate, nor
09-10, which nobody here has), the model segments twice: its raw argmax with the max-softmax confidence, and
its card's post-processing (for `lightreseg-oct` the ordered surfaces of `reseg.inference.surfaces`). A pixel
keeps the post-processed label only where

- both agree (the surface constraints did not have to overrule the network), and
- the confidence is at least ``--confidence``;

every other pixel, and the registration fill outside the scan field, is IGNORE_INDEX. So is every A-scan
without at least MIN_LAYER_PIXELS kept layer pixels (classes 1-7): at the edges of the field and in some
shadowed columns the model confidently calls everything choroid, which no constraint can catch. Fluid is
kept only where the model is confident of it, so self-training can sharpen cysts it already finds but
never teaches "no fluid" where it merely hesitates. The folder is a training set like the others:

    python training/pseudo_label_duke.py ../shared/data lightreseg-oct OUT_DIR/duke_pseudo --every 2
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from reseg.classes import IGNORE_INDEX
from reseg.data.dataset import write_training_set
from reseg.data.spectralis import scan_field_mask
from reseg.inference.segmentation import segment
from reseg.io import read_volume
from reseg.zoo.weights import LoadedModel, load_model

DUKE_SPACING = (1.0, 0.00387, 0.0113)
TRAIN_SUBJECTS = range(1, 7)
MIN_LAYER_PIXELS = 20  # ~80 um of confidently labelled retina; the thinnest foveal retina has ~150 um


def unlabelled_bscans(data: Path, subject: int, every: int) -> list[Path]:
    """Every `every`-th unannotated B-scan of one subject, in volume order (INDEX.csv of the data)."""
    folder = data / "duke_dme"
    with (folder / "unlabelled" / "INDEX.csv").open(newline="") as index:
        rows = [r for r in csv.DictReader(index) if int(r["subject"]) == subject and r["is_graded_elsewhere"] == "0"]
    return [folder / row["file"] for row in rows[::every]]


def pseudo_labels(model: LoadedModel, bscans: np.ndarray, confidence: float) -> tuple[np.ndarray, float]:
    """The kept pseudo-labels of (N, H, W) B-scans and the share of scan-field pixels kept."""
    raw = segment(model, bscans, with_confidence=True, raw=True)
    ordered = segment(model, bscans).labels
    assert raw.confidence is not None
    keep = (raw.labels == ordered) & (raw.confidence >= confidence)
    field = np.stack([scan_field_mask(b) for b in bscans])
    keep &= field
    labels = without_implausible_a_scans(np.where(keep, ordered, IGNORE_INDEX).astype(np.uint8))
    return labels, float((labels != IGNORE_INDEX).sum() / max(field.sum(), 1))


def without_implausible_a_scans(labels: np.ndarray) -> np.ndarray:
    """(N, H, W) pseudo-labels with every A-scan that keeps fewer than MIN_LAYER_PIXELS layer pixels ignored."""
    layered = ((labels >= 1) & (labels <= 7)).sum(axis=1)  # (N, W)
    return np.where((layered >= MIN_LAYER_PIXELS)[:, None, :], labels, IGNORE_INDEX).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with duke_dme/unlabelled/)")
    parser.add_argument("model", help="model name or checkpoint that labels")
    parser.add_argument("output", type=Path, help="training-set folder to write")
    parser.add_argument("--every", type=int, default=2, help="take every n-th unannotated B-scan")
    parser.add_argument("--confidence", type=float, default=0.8)
    parser.add_argument("--subjects", type=int, nargs="+", default=list(TRAIN_SUBJECTS))
    args = parser.parse_args()
    if any(s not in TRAIN_SUBJECTS for s in args.subjects):
        raise SystemExit(f"only training subjects {TRAIN_SUBJECTS.start}-{TRAIN_SUBJECTS.stop - 1} may be used")
    model = load_model(args.model)
    scans = []
    for subject in args.subjects:
        paths = unlabelled_bscans(args.data, subject, args.every)
        if not paths:
            raise SystemExit(f"no unannotated B-scans of subject {subject:02d} under {args.data / 'duke_dme'}")
        bscans = np.stack([read_volume(path).data[0] for path in paths])
        labels, kept = pseudo_labels(model, bscans, args.confidence)
        print(f"subject {subject:02d}: {len(paths)} B-scans, {kept:.1%} of scan-field pixels kept")
        scans.append((f"duke_subject{subject:02d}_unlabelled", bscans, labels, DUKE_SPACING))
    write_training_set(
        args.output,
        scans,
        "OCT",
        f"Duke DME unannotated B-scans (Chiu et al. 2015), subjects {', '.join(f'{s:02d}' for s in args.subjects)}, "
        f"one in {args.every}, pseudo-labelled by {model.card.name} v{model.card.version} "
        f"(post-processed = raw argmax, confidence >= {args.confidence})",
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Class conventions shared by phantoms, model cards, review and export (product.md, "Classes")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentationClass:
    index: int
    name: str
    color: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "color": list(self.color)}

    @classmethod
    def from_dict(cls, entry: dict) -> SegmentationClass:
        red, green, blue = (int(c) for c in entry["color"])
        return cls(int(entry["index"]), str(entry["name"]), (red, green, blue))


def _classes(*entries: tuple[str, tuple[int, int, int]]) -> tuple[SegmentationClass, ...]:
    return tuple(SegmentationClass(i, name, color) for i, (name, color) in enumerate(entries))


# The 10-class convention of the Duke DME data. ILM = top of RNFL (1), BM = bottom of OS+RPE (7).
OCT_CLASSES = _classes(
    ("vitreous", (0, 0, 0)),
    ("RNFL", (230, 25, 75)),
    ("GCL+IPL", (60, 180, 75)),
    ("INL", (255, 225, 25)),
    ("OPL", (0, 130, 200)),
    ("ONL+IS myoid", (245, 130, 48)),
    ("ellipsoid zone", (145, 30, 180)),
    ("OS+RPE", (70, 240, 240)),
    ("choroid/sclera", (128, 128, 0)),
    ("intraretinal fluid", (240, 50, 230)),
)
OCT_FLUID = 9
# The 8 OCT boundaries, top to bottom: boundary k is the top of class k + 1 of OCT_CLASSES (BM: the choroid's).
OCT_BOUNDARIES = ("ILM", "RNFL-GCL", "IPL-INL", "INL-OPL", "OPL-ONL", "ONL-EZ", "EZ-RPE", "BM")
OCT_RETINAL_LAYERS = tuple(range(1, 8))  # ordered top to bottom in every A-scan

# The 8 abdominal organs of the Synapse multi-organ CT benchmark, plus background.
CT_CLASSES = _classes(
    ("background", (0, 0, 0)),
    ("aorta", (255, 0, 0)),
    ("gallbladder", (0, 200, 0)),
    ("left kidney", (0, 0, 255)),
    ("right kidney", (0, 255, 255)),
    ("liver", (255, 0, 255)),
    ("pancreas", (255, 255, 0)),
    ("spleen", (128, 0, 255)),
    ("stomach", (255, 128, 0)),
)

# Label value for pixels whose class is unknown (not reviewed); losses and metrics skip it.
IGNORE_INDEX = 255

"""Limits that keep memory bounded by the input, not by what a file claims.

A label is a class index: ``class_<i>`` names, classifier rows and confusion matrices are made for
every index up to the largest, so one label of ``10**9`` in a small file would take gigabytes.
Where the class count is given (a label map, a names file, ``--num-classes``) labels are checked
against it (:func:`check_label_range`); where it is derived from the labels themselves it may not
exceed :data:`MAX_UNNAMED_CLASSES` or the number of labelled samples, whichever is larger
(:func:`derived_class_count`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["MAX_UNNAMED_CLASSES", "check_label_range", "derived_class_count"]

# Classes a data set may have without naming them (Kinetics-700 and NTU-120 fit; a larger data
# set has at least as many samples as classes, or gives a label map).
MAX_UNNAMED_CLASSES = 1000


def _where(source: str | Path, index: int, names: Sequence[str] | None) -> str:
    """``source:name`` (``name`` alone when ``source`` is empty), else ``source: sample i``."""
    if names is None:
        return f"{source}: sample {index}"
    return f"{source}:{names[index]}" if str(source) else str(names[index])


def check_label_range(
    labels: Sequence[int],
    num_classes: int,
    source: str | Path,
    names: Sequence[str] | None = None,
) -> None:
    """Refuse the first label outside ``[0, num_classes)``, naming ``source`` and the entry
    (``names[i]``, e.g. a line number, else the sample index); -1 (unlabelled) passes."""
    for index, label in enumerate(labels):
        if not -1 <= label < num_classes:
            raise ValueError(
                f"{_where(source, index, names)}: label {label} is outside the "
                f"{num_classes} classes (0..{num_classes - 1})"
            )


def derived_class_count(
    labels: Sequence[int], source: str | Path, names: Sequence[str] | None = None
) -> int:
    """``max(labels) + 1`` classes, refused (naming the entry) when that exceeds both
    :data:`MAX_UNNAMED_CLASSES` and the number of labels: such a count is a broken label, not a
    data set."""
    limit = max(MAX_UNNAMED_CLASSES, len(labels))
    for index, label in enumerate(labels):
        if label < 0 or label >= limit:
            raise ValueError(
                f"{_where(source, index, names)}: label {label} would make {label + 1} classes "
                f"for {len(labels)} labelled samples; give the class names (a label map) or the "
                "class count"
            )
    return max(labels, default=-1) + 1

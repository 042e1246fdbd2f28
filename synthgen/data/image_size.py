"""The side every image is resized to at ingest: ``data.image_size``, or one picked from the data.

With ``data.image_size`` unset (``null`` or ``auto``), :func:`resolve_image_size` takes the
median side of the images after their center crop to a square (the shorter side) and picks
the nearest power of two on a log scale (25 px -> 32, 40 px -> 32, 48 px -> 64), clamped to
:data:`AUTO_MIN`-:data:`AUTO_MAX` px so that a training run stays CPU-sized; it logs
``images of 25x25 px resized to 32 px (data.image_size unset)`` (a warning when the cap
shrank them). An explicit size that differs from the images' own sides is kept and logged
too, naming both sizes; nothing is resized silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

AUTO_MIN, AUTO_MAX = 8, 64  # the range of automatically chosen sizes (64 px: minutes per run on CPU)


def auto_image_size(side: float) -> int:
    """The power of two nearest to ``side`` on a log scale (ties go up), clamped to 8-64."""
    exponent = math.floor(math.log2(max(side, 1.0)) + 0.5)
    return int(min(AUTO_MAX, max(AUTO_MIN, 2 ** exponent)))


def resolve_image_size(sizes: Sequence[tuple[int, int]], requested: int | None, where: str) -> int:
    """The side to resize to, given each image's ``(width, height)``; logs what happens.

    Args:
        sizes: ``(width, height)`` of every image as read (non-empty).
        requested: ``data.image_size``; ``None`` picks one from ``sizes`` (see the module docs).
        where: the file or folder the images come from (prefixes the log line).

    Returns:
        ``requested`` when given, else the chosen power of two.
    """
    arr = np.asarray(sizes, dtype=float).reshape(-1, 2)
    width, height = (int(round(v)) for v in np.median(arr, axis=0))
    distinct = len({(int(w), int(h)) for w, h in arr})
    shown = f"{width}x{height} px" if distinct == 1 else f"median {width}x{height} px ({distinct} sizes)"
    side = float(np.median(arr.min(axis=1)))
    if requested is not None:
        if distinct > 1 or width != requested or height != requested:
            log.info("%s: images of %s resized to %d px (data.image_size: %d)", where, shown, requested, requested)
        return int(requested)
    size = auto_image_size(side)
    if size == AUTO_MAX and side > AUTO_MAX * math.sqrt(2):
        log.warning("%s: images of %s resized to %d px (data.image_size unset; sizes are capped at %d px "
                    "for CPU training: set data.image_size to keep more detail)", where, shown, size, AUTO_MAX)
    elif distinct == 1 and width == height == size:
        log.info("%s: images of %s kept at %d px (data.image_size unset)", where, shown, size)
    else:
        log.info("%s: images of %s resized to %d px (data.image_size unset)", where, shown, size)
    return size

"""Image data (``data.kind: image``): read, normalize, split, save, and show as a labelled grid.

``data.path`` is one of:

* a **folder per class** (ImageFolder layout): ``<path>/<class>/<file>.png|.jpg|.jpeg``;
  class names are the sub-folder names, sorted. A folder that holds images directly
  and no class sub-folders is one class named after the folder. Hidden files and
  files with other extensions are ignored.
* an **.npz** file with an ``images`` array (N x H x W or N x H x W x C, C in 1, 3, 4;
  uint8, or floats in [0, 1]) and optionally ``labels`` (N integers) and ``classes``
  (names of the sorted distinct labels). Without ``labels`` it is one class.
* ``sklearn:digits`` - scikit-learn's bundled 8 x 8 handwritten digits (1,797 images,
  10 classes, BSD licence), read offline with ``sklearn.datasets.load_digits``; the
  0-16 intensities become 0-255.

Every image becomes ``data.image_size`` x ``data.image_size`` (a power of two; unset: picked
from the images' median side and logged, see :mod:`synthgen.data.image_size`) with
``data.channels`` channels:

* **sizes**: a non-square image is center-cropped to a square, then every image is
  resized with Lanczos filtering (up or down), so mixed sizes are accepted;
* **modes**: with ``channels: null`` the set is grayscale (1 channel) when every image
  is grayscale (PIL modes 1, L, LA, I, I;16, F), else RGB (3); each image is converted
  to that mode (alpha is dropped; palette images are expanded);
* a **single class** trains an unconditional model (logged); samples then carry that
  class's label.

Reading streams: a folder is read in two passes (file headers for the sizes and modes,
then one image at a time decoded and resized into the output array), so memory holds the
resized set and one full-resolution image; an ``.npz`` is converted one image at a time.

Errors (:class:`~synthgen.errors.DataError`, naming the file or folder): a path that does
not exist; a file that cannot be decoded (corrupt or truncated) - it is never skipped
silently; an empty class folder; a folder that mixes loose images with class folders; no
images at all; an ``.npz`` without ``images``, with a bad shape or dtype, or with
labels of another length; a class name that is not a plain name (see
:func:`check_class_names`: class names become folder names when images are written).

The split (:func:`split_images`) is stratified by class and seeded: each class with at
least two images gives ``round(n * holdout)`` of them (at least 1, at most ``n - 1``)
to the holdout. Splits are saved as ``data/train.npz`` and ``data/holdout.npz``
(``images`` uint8 N x H x W x C, ``labels`` int64, ``classes``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthgen.config import DataConfig
from synthgen.data.image_size import resolve_image_size
from synthgen.data.sources import DIGITS  # the bundled digits; the table of bundled data is there
from synthgen.errors import DataError
from synthgen.io import atomic_path

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
MAX_CLASS_NAME = 100  # longest class name, in characters (and at most 255 bytes as UTF-8)


def check_class_names(classes: Sequence[str], where: str) -> None:
    """Check that every class name is a plain name, safe as one folder name.

    Class names become directories when images are written (``<dir>/<class>/00001.png``),
    so each must be a plain name: a non-empty string of at most :data:`MAX_CLASS_NAME`
    characters (255 bytes as UTF-8) with no path separator (``/``, ``\\``), no drive
    colon (``:``), no NUL or other control character, not ``.`` or ``..``, not starting
    with ``.`` (hidden folders are skipped when a folder is read back) and not an absolute
    path; and no two names may be equal ignoring case (they would share one folder on
    case-insensitive file systems).

    Args:
        classes: the class names.
        where: the file, folder or model the names come from (prefixes the message).

    Raises:
        DataError: naming ``where`` and the offending class.
    """
    seen: dict[str, str] = {}
    for name in classes:
        if not isinstance(name, str) or not name:
            problem = "is empty" if name == "" else "is not a string"
        elif len(name) > MAX_CLASS_NAME or len(name.encode("utf-8", "surrogatepass")) > 255:
            problem = f"is longer than {MAX_CLASS_NAME} characters or 255 bytes"
        elif any(unicodedata.category(ch) == "Cc" for ch in name):
            problem = "holds a NUL or control character"
        elif any(sep in name for sep in ("/", "\\", ":")):
            problem = "holds a path separator or drive colon (/, \\ or :)"
        elif name.startswith("."):
            problem = "is '.', '..' or starts with '.'"
        elif name.strip() != name:
            problem = "starts or ends with white space"
        elif name.casefold() in seen:
            problem = f"repeats class {seen[name.casefold()]!r} (names must differ ignoring case)"
        else:
            seen[name.casefold()] = name
            continue
        raise DataError(f"{where}: class name {name!r} {problem}; class names become folder names, "
                        "so each must be a plain name")


@dataclass
class ImageSet:
    """Images with class labels.

    Attributes:
        images: uint8 array N x H x W x C.
        labels: int64 array of N class indices into ``classes``.
        classes: class names.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def conditional(self) -> bool:
        return len(self.classes) > 1

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, found)}

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], list(self.classes))


@dataclass
class ImageSchema:
    """What ingest found: written to ``schema.json``."""

    image_size: int
    channels: int
    classes: list[str]
    counts: dict[str, dict[str, int]]
    source: str
    kind: str = "image"

    @property
    def conditional(self) -> bool:
        return len(self.classes) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "image_size": self.image_size, "channels": self.channels,
                "classes": self.classes, "conditional": self.conditional, "counts": self.counts,
                "n_train": sum(self.counts.get("train", {}).values()),
                "n_holdout": sum(self.counts.get("holdout", {}).values()), "source": self.source}

    def save(self, path: str | Path) -> None:
        from synthgen.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ImageSchema:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: schema not found; run the ingest stage first")
        raw = json.loads(path.read_text())
        if raw.get("kind") != "image":
            raise DataError(f"{path}: not an image schema (kind {raw.get('kind')!r}); rerun ingest")
        return cls(raw["image_size"], raw["channels"], list(raw["classes"]), raw["counts"], raw["source"])


# -- reading -------------------------------------------------------------------------------------
def _square(img, size: int):
    from PIL import Image

    w, h = img.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    return img


def _to_array(img, channels: int) -> np.ndarray:
    if img.mode in ("I", "I;16", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" and arr.max() > 255 else 255.0
        from PIL import Image

        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if channels == 1 else arr


def _open(path: Path, decode: bool = True):
    """The image at ``path``; ``decode=False`` reads only the header (``size``, ``mode``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if not decode:
                return img  # the file is closed on return; size and mode stay readable
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__}: {str(exc)[:120]})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS)


def _read_folder(root: Path, size: int | None, channels: int | None) -> ImageSet:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(root)
    if subdirs and loose:
        raise DataError(f"{root}: holds both images ({loose[0].name}) and class folders "
                        f"({subdirs[0].name}); put every image in a class folder")
    groups = [(p.name, _image_files(p)) for p in subdirs] if subdirs else [(root.name, loose)]
    check_class_names([name for name, _ in groups], str(root))
    for name, files in groups:
        if not files:
            folder = root / name if subdirs else root
            raise DataError(f"{folder}: no images ({', '.join(EXTENSIONS)}) in this "
                            f"{'class folder' if subdirs else 'folder'}")
    files = [(label, f) for label, (_, names) in enumerate(groups) for f in names]
    headers = [(h.size, h.mode) for h in (_open(f, decode=False) for _, f in files)]  # pass 1: headers only
    if channels is None:
        channels = 1 if all(mode in _GRAY_MODES for _, mode in headers) else 3
    size = resolve_image_size([dims for dims, _ in headers], size, str(root))
    images = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for i, (_, f) in enumerate(files):  # pass 2: one full-resolution image at a time
        images[i] = _to_array(_square(_open(f), size), channels)
    sizes = {dims for dims, _ in headers}
    modes = {mode for _, mode in headers}
    if len(sizes) > 1 or len(modes) > 1:
        log.info("ingest: %d sizes and modes %s resized/converted to %dx%dx%d",
                 len(sizes), sorted(modes), size, size, channels)
    labels = np.array([label for label, _ in files], dtype=np.int64)
    return ImageSet(images, labels, [name for name, _ in groups])


def _from_arrays(images: np.ndarray, labels: np.ndarray | None, classes: list[str] | None,
                 size: int | None, channels: int | None, where: str) -> ImageSet:
    from PIL import Image

    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or len(images) == 0:
        raise DataError(f"{where}: images must be N x H x W or N x H x W x C (C = 1, 3 or 4) "
                        f"with N > 0, got shape {images.shape}")
    scale = images.dtype != np.uint8  # floats in [0, 1]: scaled per image below
    if scale and (not np.issubdtype(images.dtype, np.floating) or np.nanmin(images) < 0 or np.nanmax(images) > 1):
        raise DataError(f"{where}: images must be uint8 or floats in [0, 1], got {images.dtype}")
    if labels is None:
        labels = np.zeros(len(images), dtype=np.int64)
        names = classes or ["0"]
    else:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"{where}: {len(labels)} labels for {len(images)} images")
        values, labels = np.unique(labels, return_inverse=True)
        names = classes or [str(v) for v in values]
        if len(names) != len(values):
            raise DataError(f"{where}: {len(names)} class names for {len(values)} distinct labels")
    names = [str(n) for n in names]
    check_class_names(names, where)
    in_channels = images.shape[-1]
    if channels is None:
        channels = 1 if in_channels == 1 else 3
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[in_channels]
    size = resolve_image_size([(images.shape[2], images.shape[1])], size, where)
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for i, arr in enumerate(images):
        if scale:
            arr = np.round(arr * 255).astype(np.uint8)
        img = Image.fromarray(arr[..., 0] if in_channels == 1 else arr, mode=mode)
        out[i] = _to_array(_square(img, size), channels)
    return ImageSet(out, labels.astype(np.int64), names)


def read_images(path: str | Path, image_size: int | None = None, channels: int | None = None) -> ImageSet:
    """Read ``path`` (a class-folder tree, an ``.npz`` or ``sklearn:digits``; see the module docs).

    Args:
        path: where the images are.
        image_size: output side in pixels; default ``None``: picked from the images (logged).
        channels: 1, 3, or ``None`` (default: grayscale when every image is).

    Raises:
        DataError: see the module docstring; the message names the file or folder.
    """
    if str(path) == DIGITS:
        from sklearn.datasets import load_digits

        digits = load_digits()
        raw = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
        return _from_arrays(raw, digits.target, [str(c) for c in digits.target_names], image_size, channels, DIGITS)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    if path.is_dir():
        return _read_folder(path, image_size, channels)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "images" not in npz:
                    raise DataError(f"{path}: no 'images' array (found {sorted(npz.files)})")
                images = npz["images"]
                labels = npz["labels"] if "labels" in npz else None
                classes = [str(c) for c in npz["classes"]] if "classes" in npz else None
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable archive
            raise DataError(f"{path}: not a readable .npz ({exc.__class__.__name__})") from None
        return _from_arrays(images, labels, classes, image_size, channels, str(path))
    raise DataError(f"{path}: expected a folder of class folders, an .npz file or {DIGITS!r}")


# -- split and storage -------------------------------------------------------------------------
def split_images(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Seeded split stratified by class (see the module docstring)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(data), dtype=bool)
    for label in range(len(data.classes)):
        idx = np.flatnonzero(data.labels == label)
        if len(idx) < 2:
            continue
        take = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        mask[rng.choice(idx, size=take, replace=False)] = True
    return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))


def save_images(path: str | Path, data: ImageSet) -> None:
    """Write ``images``, ``labels`` and ``classes`` to an ``.npz`` (atomically)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=data.images, labels=data.labels, classes=np.array(data.classes))


def load_images(path: str | Path, what: str = "images") -> ImageSet:
    """Read an ``.npz`` written by :func:`save_images`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; run the earlier stages first")
    with np.load(path, allow_pickle=False) as npz:
        return ImageSet(npz["images"], npz["labels"].astype(np.int64), [str(c) for c in npz["classes"]])


def ingest_images(cfg: DataConfig) -> tuple[ImageSchema, ImageSet, ImageSet]:
    """Read ``cfg.path`` and split it; returns the schema and the train and holdout sets."""
    data = read_images(cfg.path, cfg.image_size, cfg.channels)
    if len(data) < 2:
        raise DataError(f"{cfg.path}: {len(data)} image(s); at least 2 are needed")
    if not data.conditional:
        log.info("ingest: one class (%s): the model will be unconditional", data.classes[0])
    train, holdout = split_images(data, cfg.holdout, cfg.seed)
    schema = ImageSchema(int(data.images.shape[1]), int(data.images.shape[-1]), list(data.classes),
                         {"train": train.counts(), "holdout": holdout.counts()}, str(cfg.path))
    return schema, train, holdout


def write_image_folder(directory: str | Path, images: np.ndarray, labels: np.ndarray,
                       classes: list[str]) -> list[dict[str, Any]]:
    """Write ``<directory>/<class>/00001.png ...`` (numbered per class) plus ``labels.csv``.

    The directory is replaced atomically. Returns one ``{"file", "label", "class"}`` row
    per image, in input order.

    Raises:
        DataError: a class name that is not a plain name (:func:`check_class_names`; checked
            again here, whatever the names came from: a schema, a saved model), or a label
            that is not an index into ``classes``; nothing is written then.
    """
    from PIL import Image

    check_class_names(list(classes), str(directory))
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DataError(f"{directory}: {len(labels)} labels for {len(images)} images")
    if len(labels) and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= len(classes)):
        raise DataError(f"{directory}: labels must be class indices 0..{len(classes) - 1}, "
                        f"got {labels.dtype} values in [{labels.min()}, {labels.max()}]")
    rows: list[dict[str, Any]] = []
    counters = [0] * len(classes)
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        for name in classes:
            (tmp / name).mkdir()
        for image, label in zip(images, labels):
            counters[label] += 1
            rel = f"{classes[label]}/{counters[label]:05d}.png"
            arr = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(arr, mode="L" if image.shape[-1] == 1 else "RGB").save(tmp / rel)
            rows.append({"file": rel, "label": int(label), "class": classes[label]})
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")  # quotes class names with commas or quotes
        writer.writerow(["file", "label", "class"])
        writer.writerows([r["file"], r["label"], r["class"]] for r in rows)
        (tmp / "labels.csv").write_text(buffer.getvalue())
    return rows


def read_image_folder(directory: str | Path, classes: list[str], channels: int) -> ImageSet:
    """Read back a folder written by :func:`write_image_folder` (order of ``labels.csv``)."""
    directory = Path(directory)
    index = directory / "labels.csv"
    if not index.is_file():
        raise DataError(f"{index}: not found; run the generate stage first")
    lookup = {name: i for i, name in enumerate(classes)}
    images, labels = [], []
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        rel, name = row.get("file"), row.get("class")
        if rel is None or name is None:
            raise DataError(f"{index}: needs the columns file and class")
        if name not in lookup:
            raise DataError(f"{index}: class {name!r} is not one of the training classes")
        img = _open(directory / rel)
        images.append(_to_array(img, channels))
        labels.append(lookup[name])
    if not images:
        raise DataError(f"{index}: no images listed")
    return ImageSet(np.stack(images), np.array(labels, dtype=np.int64), list(classes))


def sample_grid(images: np.ndarray, labels: Sequence[int] | np.ndarray | None = None,
                path: str | Path | None = None, nrow: int = 10, *, min_cell: int = 32) -> bytes:
    """A PNG grid of images, one row per class when labels are given.

    Args:
        images: uint8 N×H×W×C (C = 1 or 3) or N×H×W.
        labels: int class per image, or None. With labels, each row shows the first
            ``nrow`` images of one class (classes sorted), the class written at the left.
        path: where to write the PNG too (atomically); default None (only returned).
        nrow: images per row; default 10.
        min_cell: images are enlarged (nearest neighbour, integer factor) to at least
            this many pixels on their longer side; default 32.

    Returns:
        The PNG file's bytes (deterministic for the same input).
    """
    from PIL import Image, ImageDraw

    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
        raise DataError(f"sample_grid: expected a non-empty uint8 N×H×W(×C) array, got {arr.dtype} {arr.shape}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if nrow < 1:
        raise DataError(f"sample_grid: nrow must be at least 1, got {nrow}")
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (len(arr),):
            raise DataError(f"sample_grid: expected {len(arr)} labels, got shape {lab.shape}")
        rows = [(str(int(c)), arr[lab == c][:nrow]) for c in np.unique(lab)]
    else:
        rows = [("", arr[i:i + nrow]) for i in range(0, len(arr), nrow)]
    h, w = arr.shape[1:3]
    scale = max(1, math.ceil(min_cell / max(h, w)))
    pad = 2
    cell_h, cell_w = h * scale + pad, w * scale + pad
    margin = 8 + 7 * max(len(name) for name, _ in rows) if labels is not None else 0
    mode = "L" if arr.ndim == 3 else "RGB"
    grid = Image.new(mode, (margin + pad + nrow * cell_w, pad + len(rows) * cell_h),
                     color=255 if mode == "L" else (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, row) in enumerate(rows):
        top = pad + r * cell_h
        if name:
            draw.text((4, top + cell_h // 2 - 6), name, fill=0 if mode == "L" else (0, 0, 0))
        for c, img in enumerate(row):
            tile = Image.fromarray(np.ascontiguousarray(img), mode=mode)
            grid.paste(tile.resize((w * scale, h * scale), Image.NEAREST), (margin + pad + c * cell_w, top))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data

"""Crash-safe file output, the output-directory lock, and content hashes.

Every file synthgen writes goes to a temporary folder beside its destination
(``.synthgen-tmp-<name>-XXXX/``), is flushed to disk (``fsync`` of each file and folder)
and only then renamed into place, so an interrupted or failed run never leaves a
half-written artifact, and a renamed file is not empty after a power cut. A directory is
replaced by one atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux): a reader sees
the old folder or the new one, never neither. Where the exchange is unavailable the old
folder is first renamed to ``.<name>.synthgen-old``; a crash between the two renames is
repaired by :func:`recover`, which puts the old folder back.

:func:`output_lock` makes one process the only writer of an ``output.dir``: an exclusive
``flock`` on ``<output.dir>/.synthgen.lock``, released by the operating system when the
process ends (``kill -9`` included; the file then stays, unlocked, until the next run
deletes it on release). A second writer fails at once with
:class:`~synthgen.errors.BusyError` naming the holder. Taking the lock also runs
:func:`recover` on the directory (no other writer can be active then): temp debris of
killed runs is removed and interrupted folder replacements are rolled back.

Example::

    with output_lock("runs/penguins", "synthgen run"):
        write_json("runs/penguins/generation.json", {"rows": 10})
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen.errors import BusyError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected from a second writer
    fcntl = None

log = logging.getLogger(__name__)

TMP_PREFIX = ".synthgen-tmp-"  # temp folders of atomic_path: debris once a run is killed
OLD_SUFFIX = ".synthgen-old"  # a replaced folder between the two renames of the fallback
LOCK_FILE = ".synthgen.lock"
RENAME_EXCHANGE, AT_FDCWD = 2, -100  # <linux/fs.h>, <fcntl.h>


# -- durable, atomic writes ------------------------------------------------------------------------
def flush(path: Path) -> None:
    """``fsync`` one file or directory (a directory: the names in it), where the OS allows it."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. a directory on Windows: nothing to flush through a handle
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file and folder under a directory, to disk."""
    if path.is_dir():
        for item in path.rglob("*"):
            if not item.is_symlink():
                flush(item)
    flush(path)


@functools.lru_cache(maxsize=1)
def renameat2() -> Any:
    """glibc's ``renameat2``, or ``None`` off Linux or on an older C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; ``False`` where the OS or file system cannot."""
    function = renameat2()
    return function is not None and function(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b),
                                             RENAME_EXCHANGE) == 0


def replace_dir(new: Path, path: Path) -> None:
    """Put directory ``new`` in the place of directory ``path``; the old content ends in ``new``
    (the exchange) or is removed (the two-rename fallback, which :func:`recover` repairs)."""
    if exchange(new, path):
        return
    old = path.with_name(f".{path.name}{OLD_SUFFIX}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    flush(path.parent)
    os.replace(new, path)
    flush(path.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success flush it to disk and move it onto ``path`` (a file
    or a directory) in one step. On an exception nothing at ``path`` changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        fsync_tree(tmp)
        if path.is_dir() and not path.is_symlink() and tmp.is_dir():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
        flush(path.parent)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def recover(root: str | Path) -> list[str]:
    """Repair what killed writers left under ``root``: remove temp folders of
    :func:`atomic_path` and put back a folder whose replacement stopped between its two
    renames (or drop the old copy when the new one is in place). Call it only while
    holding :func:`output_lock` (no writer may be active). Returns what was done."""
    done: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            item = Path(dirpath) / name
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
                done.append(f"removed {item}")
            elif name.startswith(".") and name.endswith(OLD_SUFFIX):
                target = item.with_name(name[1:-len(OLD_SUFFIX)])
                if target.exists():
                    shutil.rmtree(item, ignore_errors=True)
                    done.append(f"removed {item}")
                else:
                    os.replace(item, target)
                    done.append(f"restored {target}")
            else:
                continue
            if name in dirnames:
                dirnames.remove(name)
    for line in done:
        log.info("recovered after an interrupted run: %s", line)
    return done


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# -- one writer per output directory ---------------------------------------------------------------
HELD: dict[str, list[int]] = {}  # resolved output dir -> [lock fd, depth]: the locks this process holds
HELD_GUARD = threading.Lock()


def lock_holder(path: Path) -> str:
    """Who holds a lock file, in words, from what the holder wrote into it."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}`, since {info.get('since')}"


@contextlib.contextmanager
def output_lock(root: str | Path, command: str = "synthgen") -> Iterator[Path]:
    """Hold the exclusive writer lock of output directory ``root`` for the block (re-entrant
    within a process: a flow's stages share the lock of the flow). Recovers the directory
    (:func:`recover`) once the lock is taken.

    Raises:
        BusyError: another process holds the lock (the message names it).
    """
    root = Path(root)
    created = [d for d in (root, *root.parents) if not d.exists()]  # removed again if left empty
    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    with HELD_GUARD:
        entry = HELD.get(key)
        if entry is not None:
            entry[1] += 1
        else:
            HELD[key] = [acquire(root / LOCK_FILE, command), 1]
    try:
        if entry is None:
            recover(root)
        yield root
    finally:
        with HELD_GUARD:
            HELD[key][1] -= 1
            if HELD[key][1] == 0:
                (root / LOCK_FILE).unlink(missing_ok=True)  # still locked: a waiter that opened it retries
                os.close(HELD.pop(key)[0])
                for folder in created:  # a refused run leaves no empty output.dir behind
                    with contextlib.suppress(OSError):
                        folder.rmdir()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block, waiting for it (released on exit or
    when the process dies); no lock where the platform has none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def acquire(path: Path, command: str) -> int:
    """Take the ``flock`` of ``path`` without waiting and write who holds it; return the fd.

    The holder deletes the file when it is done, so a lock taken on a file that is no
    longer at ``path`` (deleted, then created anew by another process) is given up and
    taken again on the file that is there."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)  # a releasing writer may have removed it
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            log.warning("%s: this platform has no file locks; a second writer is not stopped", path.parent)
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BusyError(f"{path.parent}: another synthgen run is writing here ({lock_holder(path)}); "
                            "wait for it to finish or set another output.dir") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


# -- hashes ----------------------------------------------------------------------------------------
def file_hash(path: str | Path) -> str:
    """sha256 of a file, or of every file in a directory (sorted by relative path)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


DIGEST_CHARS = 36
"""The length of a data digest (:func:`data_digest`): the longest digest MLflow's dataset
lineage accepts (``MAX_DATASET_DIGEST_SIZE``), so a manifest's hash and the MLflow run's
dataset digest are the same string."""


def data_digest(path: str | Path) -> str:
    """The digest a run records for a data set (the source, the splits, the synthetic and
    augmented data): the first :data:`DIGEST_CHARS` hex digits (144 bits) of
    :func:`file_hash` (``sha256sum FILE | cut -c1-36`` for a file)."""
    return file_hash(path)[:DIGEST_CHARS]


def digest_matches(recorded: str | None, full_hash: str) -> bool:
    """Whether a recorded digest names the data whose :func:`file_hash` is ``full_hash``: a
    :func:`data_digest` or the whole sha256 (manifests written before digests were cut)."""
    return bool(recorded) and len(recorded) >= DIGEST_CHARS and full_hash.startswith(recorded)


def params_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_params_hash(params_dict: dict[str, Any]) -> str:
    """Hash of a run's params without ``tracking`` and ``output`` (where results go, not what they are)."""
    return params_hash({k: v for k, v in params_dict.items() if k not in ("tracking", "output")})

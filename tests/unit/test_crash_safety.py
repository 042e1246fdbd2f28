"""Crash safety of file output and the one-writer lock (issue 16), with real processes:
a second writer is refused naming the holder, a killed holder's lock is released by the
OS, interrupted folder replacements are rolled back, temp debris is removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthgen import io
from synthgen.errors import BusyError
from synthgen.io import LOCK_FILE, OLD_SUFFIX, TMP_PREFIX, atomic_path, output_lock, recover

HOLD = """
import sys, time
from synthgen.io import output_lock
with output_lock(sys.argv[1], "holder test"):
    print("locked", flush=True)
    time.sleep(120)
"""


def hold_in_child(root: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_frees_the_lock(tmp_path):
    root = tmp_path / "out"
    child = hold_in_child(root)
    try:
        with pytest.raises(BusyError, match=rf"{root}: another synthgen run is writing here \(pid {child.pid} "):
            with output_lock(root):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (root / f"{TMP_PREFIX}model-abc").mkdir()  # debris of the killed run
    with output_lock(root, "second"):
        assert json.loads((root / LOCK_FILE).read_text())["command"] == "second"
        assert not (root / f"{TMP_PREFIX}model-abc").exists()
    assert not (root / LOCK_FILE).exists()  # released and removed


def test_the_cli_exits_2_with_one_line_when_the_output_dir_is_busy(tmp_path):
    import yaml

    root = tmp_path / "out"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"path": str(Path("data/penguins.csv").resolve())},
                                      "output": {"dir": str(root)}, "tracking": {"uri": None}}))
    child = hold_in_child(root)
    try:
        result = subprocess.run([sys.executable, "-m", "synthgen", "ingest", "--params", str(params)],
                                capture_output=True, text=True)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("synthgen:")]
    assert lines == [lines[0]] and f"pid {child.pid}" in lines[0] and "holder test" in lines[0]
    assert "Traceback" not in result.stderr and not (root / "schema.json").exists()


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_threads_of_it(tmp_path):
    with output_lock(tmp_path) as root:
        with output_lock(root):  # a flow holds it; its stages take it again
            assert (root / LOCK_FILE).exists()
        assert (root / LOCK_FILE).exists()
    assert not (root / LOCK_FILE).exists()


def test_a_lock_on_a_new_output_dir_leaves_nothing_when_nothing_was_written(tmp_path):
    with output_lock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / LOCK_FILE).exists()
    assert list(tmp_path.iterdir()) == []  # the folders it made for the lock are gone
    with output_lock(tmp_path / "a" / "b") as root:
        (root / "kept.txt").write_text("x")
    assert (tmp_path / "a" / "b" / "kept.txt").exists() and not (tmp_path / "a" / "b" / LOCK_FILE).exists()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_directory_is_replaced_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "exchange", lambda a, b: False)
    target = tmp_path / "published"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["published"]  # no temp folder, no old copy
    with pytest.raises(RuntimeError):  # a failure inside the block leaves the old folder
        with atomic_path(target) as tmp:
            tmp.mkdir()
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_recover_rolls_back_a_replacement_killed_between_its_two_renames(tmp_path):
    old = tmp_path / f".published{OLD_SUFFIX}"  # the old folder was moved aside; the new one never arrived
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    (tmp_path / f"{TMP_PREFIX}published-x1y2").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / f".model{OLD_SUFFIX}").mkdir()  # here the new one arrived: the old copy goes
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{TMP_PREFIX}train.parquet-abcd").mkdir()
    done = recover(tmp_path)
    assert (tmp_path / "published" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "manifest.json", "model", "published"]
    assert len(done) == 4


def test_a_killed_writer_leaves_the_old_file_or_the_new_one(tmp_path):
    """SIGKILL a process that rewrites one JSON file in a loop: every kill leaves a
    complete file (old or new), never a torn one; the next lock holder cleans the debris."""
    script = """
import sys
from synthgen.io import write_json
i = 0
print("go", flush=True)
while True:
    write_json(sys.argv[1], {"i": i, "pad": "x" * 200000})
    i += 1
"""
    path = tmp_path / "record.json"
    for delay in (0.05, 0.11, 0.23, 0.31, 0.47):
        child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "go"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if path.exists():
            assert len(json.loads(path.read_text())["pad"]) == 200000
    with output_lock(tmp_path):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_scheduled_deployments_never_overlap():
    from pipelines.serve import build_deployments

    deployments = build_deployments("params.yaml", image_params="params.images.yaml")
    assert [d.concurrency_limit for d in deployments] == [1, 1]

"""Opening an MLflow store that several synthgen processes share.

A local SQLite store (``sqlite:///mlflow.db``, the default) is written by every stage of
every run, and sweeps and parallel runs write it at once. MLflow already waits up to 20 s
on a locked database (``busy_timeout``); what it does not do is survive two processes
creating the tables of a new store at the same moment, and SQLite's default rollback
journal makes every reader wait for every writer. :func:`open_client` therefore opens a
SQLite store under an exclusive file lock (``<db>.lock``, next to the database), switches
it to write-ahead logging (WAL: readers and one writer proceed together) and lets MLflow
create or migrate its tables while the lock is held. Other stores (a tracking server,
Postgres) open directly.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from synthgen.io import file_lock


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores or in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def open_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri`` whose store is ready; a SQLite store is set to WAL and
    created or migrated under ``<db>.lock``, so processes starting together do not race."""
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    with file_lock(db.with_name(db.name + ".lock")):
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # builds the store: creates or migrates its tables
    return client

"""Hostile input through the real CLI: generated CSVs and params (hypothesis).

Every case must end in exit 0, or exit 2 with one ``synthgen: error:`` line naming the
file, column or key (``synthgen run`` may also end in exit 1, a failed verdict, said in
``check failed`` lines) - never a traceback (the CLI runs in-process under click's
``CliRunner(catch_exceptions=False)``, so any exception fails the test) and never a
half-written stage: the output directory starts with an earlier good ingest, and after
the command the ingest outputs are either all the old files or all new and consistent.

The tables mix duplicate and reserved headers, unicode and whitespace names, inf/-inf,
huge and tiny numbers, mixed types, values equal to synthgen's sentinels, all-missing
columns, odd and broken date formats, 0/1/2 rows and thousands of levels; params get
negative, huge, infinite and malformed numbers (seeds, rows, epochs, holdout...).

The default tests are derandomized (the same 300 ingest cases on every run, plus two
``synthgen run`` cases: ~50 s); the ``slow`` tests draw fresh random cases, more of them,
and run ``synthgen run`` on drawn tables and on hostile params.
Each test prints and records (``record_property``) how many cases it tried.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthgen.cli import cli
from tests.conftest import PENGUINS
from tests.tiny import TINY_TABLE

INGEST_OUTPUTS = ("schema.json", "data/train.parquet", "data/holdout.parquet")

NAMES = st.one_of(
    st.sampled_from(["a", "b", "x y", " lead", "trail ", "\ttab", "é", "名前", "🙂", "", "a.1", "1", "nan", "NULL",
                     "col,comma", 'q"uote', "new\nline", "__missing_pattern__", "a__missing", "a__point",
                     "__nan__", "id", "user_id", "species"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"), min_size=1, max_size=6),
)
KINDS = ["int", "float", "huge", "inf", "category", "levels", "sentinel", "mixed", "missing", "dates",
         "bad_dates", "zoned_dates", "bool", "id", "unicode", "constant"]
DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%y", "%b %d %Y", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y %H:%M",
                "%A, %d %B %Y"]


def column_values(kind: str, n: int, rng: np.random.Generator) -> list[object]:
    """``n`` raw CSV cells of one generated column (None: an empty cell)."""
    if kind == "int":
        low, high = [(-5, 5), (0, 10**6), (-(10**18), 10**18)][rng.integers(3)]
        return [int(v) for v in rng.integers(low, high, n, endpoint=True)]
    if kind == "float":
        return [float(v) for v in rng.normal(0, 1, n) * [1.0, 1e-300, 1e-5, 1e6][rng.integers(4)]]
    if kind == "huge":
        scale = [1e300, 1.7e308, 1e150, 1e100, 1e20][rng.integers(5)]  # refused above 1e150
        return [float(v) for v in rng.choice([scale, -scale, scale / 3, 0.0], n)]
    if kind == "inf":
        values = [float(v) for v in rng.normal(size=n)]
        for i in rng.choice(n, size=max(1, n // 10), replace=False) if n else []:
            values[i] = ["inf", "-inf", "Infinity", "-Infinity"][rng.integers(4)]
        return values
    if kind == "category":
        levels = [f"L{i}" for i in range(int(rng.integers(1, 20)))]
        return list(rng.choice(levels, n))
    if kind == "levels":  # thousands of levels, each seen a few times
        return [f"level-{int(v)}" for v in rng.integers(0, max(1, n // 2), n)]
    if kind == "sentinel":
        return list(rng.choice(["__nan__", "__other__", "__rare__", "nan", "None", "n/a", "x", "y", ""], n))
    if kind == "mixed":
        return [str(v) if rng.random() < 0.5 else f"t{v}" for v in rng.integers(0, 30, n)]
    if kind == "missing":
        return [None] * n
    if kind in ("dates", "bad_dates"):
        fmt = DATE_FORMATS[rng.integers(len(DATE_FORMATS))]
        stamps = pd.Timestamp("1990-01-01") + pd.to_timedelta(rng.integers(0, 20_000, n), unit="D")
        values = [t.strftime(fmt) for t in stamps]
        if kind == "bad_dates":
            for i in rng.choice(n, size=max(1, n // 20), replace=False) if n else []:
                values[i] = ["2020-13-45", "0001-01-01", "9999-12-31", "yesterday", "2020-02-30"][rng.integers(5)]
        return values
    if kind == "zoned_dates":
        return [f"2021-03-{1 + int(d):02d}T10:00:00{['+01:00', '+05:30', 'Z', '-08:00'][int(z)]}"
                for d, z in zip(rng.integers(0, 28, n), rng.integers(0, 4, n))]
    if kind == "bool":
        return list(rng.choice(["true", "False", "TRUE", "false", "yes"][: int(rng.integers(2, 6))], n))
    if kind == "id":
        return [f"user{i}@example.com" for i in rng.permutation(n)]
    if kind == "unicode":
        return list(rng.choice(["a", " a", "a ", "Ä", "ä", "名", "🙂", "\t", " ", "a,b", 'say "hi"', "line\nbreak"], n))
    return ["same"] * n  # constant


@st.composite
def tables(draw, max_rows: int = 300, min_rows: int = 0) -> dict:
    """A CSV as columns of raw cells: names (duplicates allowed) and generated values;
    ``min_rows`` 0: 0, 1, 2 and 9-11 rows among the sizes drawn."""
    n_rows = draw(st.integers(min_rows, max_rows) if min_rows else st.one_of(
        st.sampled_from([0, 1, 2, 9, 10, 11, 30]), st.integers(12, max_rows), st.integers(12, max_rows)))
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    if draw(st.integers(0, 9)) == 0:  # a duplicate header now and then
        names.append(draw(st.sampled_from(names)))
    n_cols = len(names)
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(n_cols)]
    seed = draw(st.integers(0, 2**32 - 1))
    if "levels" in kinds and draw(st.booleans()):
        n_rows = max(n_rows, 3000)  # thousands of levels, not rows of unique values
    rng = np.random.default_rng(seed)
    columns = []
    for kind in kinds:
        values = column_values(kind, n_rows, rng)
        share = draw(st.sampled_from([0.0, 0.0, 0.1, 0.9]))
        missing = rng.random(n_rows) < share
        columns.append([None if m else v for v, m in zip(values, missing)])
    return {"names": names, "kinds": kinds, "rows": list(zip(*columns)) if columns else [], "n_rows": n_rows}


INT_TEXT = st.one_of(st.integers(-5, 5), st.integers(-(2**64), 2**64), st.sampled_from([2**31 - 1, 2**31, 2**32]))
FLOAT_TEXT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e400", "-1e400", ".nan"]))


@st.composite
def overrides(draw, names: list[str]) -> list[str]:
    """``--set`` items with hostile values; keys that name a column use the table's names."""
    def text(value) -> str:
        if isinstance(value, str):
            return value
        return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()

    pool = {
        "data.seed": INT_TEXT, "model.seed": INT_TEXT, "generate.seed": INT_TEXT, "augment.seed": INT_TEXT,
        "model.epochs": INT_TEXT, "generate.rows": INT_TEXT, "model.batch_size": INT_TEXT,
        "data.min_level_count": INT_TEXT, "data.max_categories": INT_TEXT,
        "data.holdout": FLOAT_TEXT, "data.point_mass_share": FLOAT_TEXT, "model.lr": FLOAT_TEXT,
        "validate.max.mia_auc": FLOAT_TEXT,
        "model.generator_dim": st.lists(INT_TEXT, max_size=2),
        "data.encoding": st.sampled_from(["latin-1", "utf-16", "ascii", "no-such-codec"]),
        "data.target": st.sampled_from([*names, "no such column"]),
        "data.id_columns": st.lists(st.sampled_from([*names, "ghost"]), max_size=2),
    }
    if draw(st.integers(0, 9)) < 6:  # most cases: the table alone is the hostile input
        return []
    keys = draw(st.lists(st.sampled_from(sorted(pool)), max_size=3, unique=True))
    items = [f"{key}={text(draw(pool[key]))}" for key in keys]
    if names and draw(st.booleans()):
        kind = draw(st.sampled_from(["continuous", "integer", "categorical", "boolean", "datetime", "id", "nope"]))
        items.append(f"data.columns={json.dumps({draw(st.sampled_from(names)): kind})}")
    return items


def write_csv(path: Path, table: dict) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(table["names"])
        writer.writerows(["" if v is None else v for v in row] for row in table["rows"])


def digests(out: Path) -> dict[str, str | None]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() if (out / name).is_file() else None
            for name in INGEST_OUTPUTS}


def params_file(folder: Path, data: Path, out: Path, **sections) -> Path:
    params = {"data": {"path": str(data)}, "tracking": {"uri": None}, "output": {"dir": str(out)}, **sections}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return path


def invoke(*args: str):
    """The CLI in this process; an exception escapes (a traceback fails the test)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


PARAMS_KEY = re.compile(r"\b(data|model|privacy|generate|validate|augment|tracking|output|sweep)\.\w")


def check_outcome(result, allowed: tuple[int, ...], named: tuple[str, ...]) -> str:
    """Exit code allowed; on exit 2 exactly one error line, naming the file, column or key
    (one of ``named``, or a params key such as ``model.batch_size``)."""
    assert result.exit_code in allowed, (result.exit_code, result.output[-3000:])
    assert "Traceback" not in result.output, result.output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("synthgen: error:")]
    if result.exit_code == 2:
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-2000:]
        assert any(name in errors[0] for name in named) or PARAMS_KEY.search(errors[0]), errors[0]
        return errors[0]
    assert not errors, result.stderr[-2000:]
    if result.exit_code == 1:
        assert "synthgen: check failed:" in result.stderr, result.stderr[-2000:]
    return ""


@pytest.fixture(scope="module")
def old_ingest(tmp_path_factory) -> Path:
    """An output directory holding a good ingest (the "old" outputs each case starts from)."""
    root = tmp_path_factory.mktemp("fuzz-old")
    result = invoke("ingest", "--params", str(params_file(root, PENGUINS, root / "out")))
    assert result.exit_code == 0, result.output[-2000:]
    return root / "out"


def ingest_case(old: Path, table: dict, sets: list[str], tally: Counter) -> None:
    """One case: ``synthgen ingest`` over an earlier good ingest; check exit code, message and outputs."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        tmp = Path(tmp)
        out = tmp / "out"
        shutil.copytree(old, out)
        before = digests(out)
        data = tmp / "table.csv"
        write_csv(data, table)
        params = params_file(tmp, data, out)
        result = invoke("ingest", "--params", str(params), *[a for s in sets for a in ("--set", s)])
        named = (str(data), str(params), "--set", *(s.partition("=")[0] for s in sets),
                 *(repr(name) for name in table["names"]))
        error = check_outcome(result, (0, 2), named)
        after = digests(out)
        if result.exit_code == 2:
            assert after == before, f"a failed ingest changed its outputs: {error}"
            tally["exit 2: " + kind_of(error)] += 1
            return
        assert all(after[n] != before[n] for n in INGEST_OUTPUTS), "an ingest that succeeded left old outputs"
        schema = json.loads((out / "schema.json").read_text())
        train, holdout = pd.read_parquet(out / INGEST_OUTPUTS[1]), pd.read_parquet(out / INGEST_OUTPUTS[2])
        assert schema["source"] == str(data) and list(train.columns) == [c["name"] for c in schema["columns"]]
        assert (schema["n_train"], schema["n_holdout"]) == (len(train), len(holdout))
        parsed = len(pd.read_csv(data, index_col=False, low_memory=False))  # (whitespace-only lines are blank)
        assert len(train) + len(holdout) == parsed <= table["n_rows"]
        tally["exit 0"] += 1


def kind_of(error: str) -> str:
    """An error message with its file, names and numbers blanked: what kind of refusal it was."""
    text = error.removeprefix("synthgen: error: ")
    text = re.sub(r"^\S+\.(csv|yaml): ", "", text)
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\[.*?\]", "…", text)
    return re.sub(r"\d+", "N", text)[:60]


def report(record_property, name: str, tally: Counter) -> None:
    total = sum(tally.values())
    print(f"\n{name}: {total} cases tried: " + ", ".join(f"{k} x{v}" for k, v in tally.most_common()))
    record_property("fuzz_cases", total)
    record_property("fuzz_outcomes", dict(tally))


FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WIDE = settings(max_examples=4000, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_ingest_survives_hostile_tables_and_params(old_ingest, record_property):
    tally: Counter = Counter()

    @FAST
    @given(data=st.data())
    def case(data):
        table = data.draw(tables())
        ingest_case(old_ingest, table, data.draw(overrides(table["names"])), tally)

    case()
    report(record_property, "ingest fuzz", tally)
    assert tally["exit 0"] >= 30 and sum(tally.values()) >= 250  # both outcomes are exercised


@pytest.mark.slow  # 4-10 min (4000 cases; 10 on 2 busy cores): fresh random cases, bigger tables
def test_ingest_survives_hostile_tables_and_params_wide(old_ingest, record_property):
    tally: Counter = Counter()

    @WIDE
    @given(data=st.data())
    def case(data):
        table = data.draw(tables(max_rows=2000))
        ingest_case(old_ingest, table, data.draw(overrides(table["names"])), tally)

    case()
    report(record_property, "ingest fuzz (wide)", tally)


def hostile_but_usable(n: int = 60, seed: int = 0) -> dict:
    """A table every stage must take: odd names, sentinel-like text, all-missing and constant
    columns, odd dates, huge and negative numbers, many rare levels."""
    rng = np.random.default_rng(seed)
    columns = {
        " spaced name ": column_values("float", n, rng),
        "名前 🙂": list(rng.choice(["Ä", "ä", " a", "a "], n)),
        "almost_sentinel": list(rng.choice(["__nan__ ", "__other", "nan", "__rare__"], n)),
        "empty": [None] * n,
        "same": ["same"] * n,
        "when": column_values("dates", n, rng),
        "big": [int(v) for v in rng.integers(-(10**15), 10**15, n)],
        "rare": [f"r{int(v)}" for v in rng.integers(0, 25, n)],
        "target": list(rng.choice(["yes", "no"], n)),
    }
    return {"names": list(columns), "rows": list(zip(*columns.values())), "n_rows": n}


def run_case(root: Path, table: dict, sets: list[str], tally: Counter) -> None:
    data = root / "table.csv"
    write_csv(data, table)
    model = {**TINY_TABLE, "epochs": 1}
    params = params_file(root, data, root / "out", model=model, generate={"rows": 40},
                         validate={"min": {"quality_score": 0.0, "gx_success_rate": 0.0}})
    result = invoke("run", "--params", str(params), *[a for s in sets for a in ("--set", s)])
    check_outcome(result, (0, 1, 2), (str(data), str(params), "--set", *(repr(name) for name in table["names"])))
    tally[f"exit {result.exit_code}"] += 1
    if result.exit_code in (0, 1):
        assert (root / "out" / "validation.json").is_file() and (root / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("sets", [[], ["data.target=target", "model.name=tabular_gan", "model.batch_size=20",
                                           "data.min_level_count=1"]],
                         ids=["ctgan", "tabular_gan-target"])
def test_run_takes_a_hostile_but_usable_table(tmp_path, sets, record_property):
    tally: Counter = Counter()
    run_case(tmp_path, hostile_but_usable(), sets, tally)
    report(record_property, "run", tally)
    assert tally["exit 0"] + tally["exit 1"] == 1  # the pipeline ran to a verdict


@pytest.mark.slow  # ~4 min: the whole pipeline on 25 drawn tables
def test_run_survives_hostile_tables(record_property):
    tally: Counter = Counter()

    @settings(max_examples=25, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(table=tables(max_rows=150, min_rows=30))
    def case(table):
        with tempfile.TemporaryDirectory(prefix="fuzz-run-") as tmp:
            run_case(Path(tmp), table, [], tally)

    case()
    report(record_property, "run fuzz", tally)


HOSTILE_RUN_PARAMS = [
    ["model.batch_size=1000000000"], ["model.pac=1000000"], ["model.lr=1e300"], ["model.generator_dim=[]"],
    ["generate.rows=1"], ["generate.rows=10"], ["data.holdout=0.89"], ["data.min_level_count=1000000000"],
    ["data.max_categories=2"], ["generate.conditions={target: Nope}"], ["generate.conditions={ghost: 1}"],
    ["generate.conditions={big: 1e300}"], ["validate.sensitive=[ghost]"],
    ["model.name=tabular_gan", "privacy.epsilon=1", "privacy.noise_multiplier=1000000000", "model.batch_size=20"],
    ["model.name=tabular_gan", "privacy.epsilon=1", "privacy.noise_multiplier=1000", "model.batch_size=20"],
    ["model.name=tabular_gan", "privacy.epsilon=0.000001", "model.batch_size=20"],
]


@pytest.mark.slow  # ~1.5 min: the whole pipeline once per hostile params set
def test_run_survives_hostile_params(tmp_path_factory, record_property):
    """Params that once crashed `synthgen run` (a 10^9 batch, pac 10^6, lr 1e300, one generated
    row, DP noise 10^9) and others at their edges: exit 0, 1 (verdict) or 2 (one line naming
    the key)."""
    tally: Counter = Counter()
    for sets in HOSTILE_RUN_PARAMS:
        run_case(tmp_path_factory.mktemp("run-params"), hostile_but_usable(), sets, tally)
    report(record_property, "run params", tally)

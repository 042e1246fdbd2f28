import numpy as np
import pandas as pd
import pytest

from synthgen.config import DataConfig
from synthgen.data.ingest import ingest, read_table, split_holdout
from synthgen.data.schema import TableSchema, infer_schema
from synthgen.errors import ConfigError, DataError


def mixed_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 10_000, n).round(2),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "active": rng.choice([True, False], n),
            "signup": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "country": ["NL"] * n,
            "empty": [np.nan] * n,
            "score": np.where(rng.random(n) < 0.25, np.nan, rng.normal(0, 1, n)),
            "rating": rng.integers(1, 4, n),
        }
    )


def test_infer_schema_kinds_and_missing_rates():
    schema = infer_schema(mixed_frame())
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "customer_id": "id",
        "age": "integer",
        "income": "continuous",
        "plan": "categorical",
        "active": "boolean",
        "signup": "datetime",
        "country": "constant",
        "empty": "constant",
        "score": "continuous",
        "rating": "categorical",
    }
    assert schema["score"].missing_rate == pytest.approx(mixed_frame()["score"].isna().mean())
    assert schema["signup"].resolution == "D"
    assert schema["plan"].categories is not None and set(schema["plan"].categories) == {"basic", "pro", "team"}


def test_schema_json_round_trip(tmp_path):
    schema = infer_schema(mixed_frame(), target="plan")
    schema.save(tmp_path / "schema.json")
    again = TableSchema.load(tmp_path / "schema.json")
    assert again.to_dict() == schema.to_dict()


def test_overrides_and_bad_override():
    schema = infer_schema(mixed_frame(), overrides={"rating": "integer"}, id_columns=["plan"])
    assert schema["rating"].kind == "integer" and schema["plan"].kind == "id"
    with pytest.raises(DataError, match="'nope'"):
        infer_schema(mixed_frame(), overrides={"nope": "integer"})
    with pytest.raises(DataError, match="column 'plan' is declared integer"):
        infer_schema(mixed_frame(), overrides={"plan": "integer"})


def test_mixed_types_become_text_with_a_note():
    frame = pd.DataFrame({"x": ["1", "2", "abc", "4"] * 10, "y": range(40)})
    spec = infer_schema(frame)["x"]
    assert spec.kind == "categorical" and "mixed numbers" in spec.note


def test_split_is_seeded_disjoint_and_stratified():
    frame = pd.DataFrame({"y": ["a"] * 80 + ["b"] * 20, "v": range(100)})
    train, holdout = split_holdout(frame, 0.2, seed=1, target="y")
    again_train, _ = split_holdout(frame, 0.2, seed=1, target="y")
    assert train.equals(again_train)
    assert set(train["v"]).isdisjoint(holdout["v"]) and len(train) + len(holdout) == 100
    assert holdout["y"].value_counts().to_dict() == {"a": 16, "b": 4}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "file is empty"),
        (b"a,b,c\n", "header but no data rows"),
        (b"a,b\n1,2\n", "1 rows; at least 10"),
        (b"name,v\n" + "caf\xe9,1\n".encode("latin-1") * 20, "is not valid utf-8; set data.encoding"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as info:
        ingest(DataConfig(path=str(path)))
    assert str(path) in str(info.value)


def test_latin1_file_reads_with_declared_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    rows = "".join(f"caf\xe9,{i % 3}\nthe,{i}\n" for i in range(10))
    path.write_bytes(("name,v\n" + rows).encode("latin-1"))
    schema, train, _ = ingest(DataConfig(path=str(path), encoding="latin-1"))
    assert "caf\xe9" in set(train["name"])


def test_missing_file_format_and_target(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "x.txt").write_text("a\n1\n")
    with pytest.raises(DataError, match="unsupported format"):
        read_table(tmp_path / "x.txt")
    path = tmp_path / "ok.csv"
    mixed_frame().to_csv(path, index=False)
    with pytest.raises(ConfigError, match="data.target: column 'nope' is not in"):
        ingest(DataConfig(path=str(path), target="nope"))


def test_parquet_ingest_keeps_types(tmp_path):
    path = tmp_path / "t.parquet"
    frame = mixed_frame()
    frame["signup"] = pd.to_datetime(frame["signup"])
    frame.to_parquet(path)
    schema, train, holdout = ingest(DataConfig(path=str(path), holdout=0.25))
    assert len(holdout) == 15 and train["signup"].dtype.kind == "M"
    assert schema.extra["n_train"] == 45


def test_schema_statistics_come_from_the_train_split_only(tmp_path):
    path = tmp_path / "t.csv"
    mixed_frame(100).to_csv(path, index=False)
    schema, train, holdout = ingest(DataConfig(path=str(path), holdout=0.3))
    assert schema["income"].min == train["income"].min() and schema["income"].max == train["income"].max()
    assert schema["score"].missing_rate == pytest.approx(train["score"].isna().mean())
    assert schema.n_rows == len(train) == 70

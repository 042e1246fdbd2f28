import json

import numpy as np
import pandas as pd
import pytest

from synthgen.config import DataConfig
from synthgen.data.ingest import RARE_LEVEL, ingest, pool_rare_levels, read_table, split_holdout, surrogate_keys
from synthgen.data.schema import FREE_TEXT_CHARS, ID_UNIQUE_SHARE, TableSchema, infer_schema
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
    rows = "".join(f"caf\xe9,{i % 3}\nthe,{i}\n" for i in range(40))  # 40: café is not a rare level
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


def test_identifier_like_text_is_an_id_not_a_category():
    n = 100
    emails = [f"user{i}@mail.example" for i in range(n)]
    emails[1] = emails[0]  # one duplicate: not all unique, still an identifier
    half = int(n * ID_UNIQUE_SHARE)  # exactly at the threshold: 50 distinct of 100
    frame = pd.DataFrame({
        "email": emails,
        "surname": [f"name{i % 40}" for i in range(n)],  # 40% distinct: a category (then pooled)
        "at_threshold": [f"v{i % half}" for i in range(n)],
        "review": [f"{'a long free text review that says little ' * 2}{i % 5}" for i in range(n)],
        "y": range(n),
    })
    frame.loc[2::3, "email"] = None  # missing values do not hide an identifier
    schema = infer_schema(frame)
    assert schema["email"].kind == "id" and "identifier-like" in schema["email"].note
    assert schema["surname"].kind == "categorical" and schema["at_threshold"].kind == "categorical"
    assert len(frame["review"][0]) >= FREE_TEXT_CHARS  # long values are free text even when repeated
    assert schema["review"].kind == "id" and "free text" in schema["review"].note
    # a few values are too few to call identifiers; a params override wins
    assert infer_schema(frame.head(15))["email"].kind == "categorical"
    assert infer_schema(frame, overrides={"email": "categorical"})["email"].kind == "categorical"


def test_surrogate_keys_keep_equality_and_drop_the_values():
    text = pd.Series(["b@x", "a@x", "b@x", None, "c@x"])
    assert surrogate_keys(text).tolist() == ["id-00000001", "id-00000002", "id-00000001", None, "id-00000003"]
    numbers = pd.Series([905, 17, 905, 3])
    keys = surrogate_keys(numbers)
    assert keys.dtype == "int64" and keys.tolist() == [1, 2, 1, 3]
    assert surrogate_keys(pd.Series([5.0, np.nan, 5.0])).tolist()[0::2] == [1, 1]


def planted_frame(n: int = 200) -> pd.DataFrame:
    """Levels seen exactly 10, 9 and 1 time(s) plus a common one, and a boolean and a target
    with a rare value; row order is the split order used by pool_rare_levels below."""
    city = ["ten"] * 10 + ["nine"] * 9 + [f"once{i}" for i in range(5)]
    city += ["common"] * (n - len(city))
    return pd.DataFrame({
        "city": city,
        "flag": [True] * 3 + [False] * (n - 3),
        "cls": ["rare_class"] * 4 + ["a", "b"] * ((n - 4) // 2),
        "x": np.arange(n, dtype=float),
    })


def test_pooling_respects_the_count_threshold_and_exemptions():
    frame = planted_frame()
    schema = infer_schema(frame, target="cls")
    holdout = pd.DataFrame({"city": ["ten", "nine", "unseen", None], "flag": [True] * 4,
                            "cls": ["a"] * 4, "x": [1.0] * 4})
    train, held = pool_rare_levels(schema, frame, holdout, min_count=10)
    assert set(train["city"]) == {"ten", "common", RARE_LEVEL}
    assert (train["city"] == RARE_LEVEL).sum() == 14  # 9 + 5 once-seen
    assert held["city"].tolist()[:3] == ["ten", RARE_LEVEL, RARE_LEVEL] and held["city"].isna().iloc[3]
    assert train["flag"].equals(frame["flag"]) and train["cls"].equals(frame["cls"])  # exempt
    assert frame["city"].iloc[10] == "nine"  # the inputs are not modified
    off, _ = pool_rare_levels(schema, frame, holdout, min_count=1)
    assert off["city"].equals(frame["city"])


def test_ingest_pools_rare_levels_before_the_schema_and_hides_ids(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    rare = [f"Rarename{i}" for i in range(60)]
    frame = pd.DataFrame({
        "surname": rng.permutation(rare * 2 + ["Smith"] * (n - 120)),
        "email": [f"person{i}@mail.example" for i in range(n)],
        "rating": rng.permutation([1] * 4 + [2, 3, 4] * ((n - 4) // 3) + [2] * ((n - 4) % 3)),
        "code": rng.permutation([7] * 3 + [8] * (n - 3)),
        "y": rng.choice(["p", "q"], n),
    })
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    cfg = DataConfig(path=str(path), target="y", columns={"code": "categorical"})
    schema, train, holdout = ingest(cfg)
    assert set(schema["surname"].categories) == {"Smith", RARE_LEVEL}  # no rare name is listed
    for split in (train, holdout):
        assert set(split["surname"]) <= {"Smith", RARE_LEVEL}
        assert split["email"].str.fullmatch(r"id-\d{8}").all()
    assert "pooled" in schema["surname"].note and "Rarename" not in json.dumps(schema.to_dict())
    assert "person" not in json.dumps(schema.to_dict())
    assert schema["email"].kind == "id" and schema["email"].categories is None
    assert schema["rating"].kind == "integer"  # an inferred integer category with a rare level: a number
    assert schema["code"].kind == "categorical" and set(schema["code"].categories) == {"8", RARE_LEVEL}
    kept, _, _ = ingest(DataConfig(path=str(path), target="y", min_level_count=1))
    assert "Rarename0" in kept["surname"].categories and kept["rating"].kind == "categorical"


def test_min_level_count_must_be_positive():
    with pytest.raises(ValueError, match="min_level_count"):
        DataConfig(path="x.csv", min_level_count=0)


def _csv(path, header: str, rows: list[str]):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_duplicate_headers_are_an_error_naming_file_and_column(tmp_path):
    path = _csv(tmp_path / "dup.csv", "a,b,a", [f"{i},{i % 3},{i}" for i in range(20)])
    with pytest.raises(DataError, match="column 'a' appears more than once in the header") as info:
        read_table(path)
    assert str(path) in str(info.value)
    extra = _csv(tmp_path / "extra.csv", "a,b", [f"{i},{i},{i}" for i in range(20)])  # not a silent index
    with pytest.raises(DataError, match="more fields than the header"):
        read_table(extra)


@pytest.mark.parametrize(("cell", "fragment"), [
    ("inf", "column 'x' has 1 infinite values"),
    ("-inf", "column 'x' has 1 infinite values"),
])
def test_infinite_numbers_are_refused_before_anything_is_written(tmp_path, cell, fragment):
    path = _csv(tmp_path / "inf.csv", "x,y", [f"{i * 1.5},k{i % 2}" for i in range(29)] + [f"{cell},k1"])
    with pytest.raises(DataError, match=fragment) as info:
        ingest(DataConfig(path=str(path)))  # raised by ingest itself: the stage writes nothing
    assert str(path) in str(info.value)


def test_sentinel_values_and_reserved_names_are_refused(tmp_path):
    from synthgen.data.ingest import RESERVED_COLUMN, RESERVED_SUFFIXES, RESERVED_VALUES
    from synthgen.transformers.prepare import MISSING_SUFFIX, NAN, OTHER, PATTERN_COLUMN, POINT_SUFFIX

    assert set(RESERVED_VALUES) == {NAN, OTHER} and RESERVED_COLUMN == PATTERN_COLUMN
    assert set(RESERVED_SUFFIXES) == {MISSING_SUFFIX, POINT_SUFFIX}
    for value in RESERVED_VALUES:
        path = _csv(tmp_path / "s.csv", "n,level", [f"{i},{value if i % 4 == 0 else 'k'}" for i in range(40)])
        with pytest.raises(DataError, match=f"column 'level' has the value '{value}' \\(10 rows\\)"):
            ingest(DataConfig(path=str(path)))
    path = _csv(tmp_path / "r.csv", "n,n__missing", [f"{i},{i % 2}" for i in range(40)])
    with pytest.raises(DataError, match="column name 'n__missing' is reserved"):
        ingest(DataConfig(path=str(path)))
    path = _csv(tmp_path / "ok.csv", "n,m__missing,level", [f"{i},{i % 2},__rare__" for i in range(40)])
    ingest(DataConfig(path=str(path)))  # no column m; __rare__ is the pooled level's own name


def test_dates_that_do_not_all_parse_are_text_and_mixed_offsets_are_utc(tmp_path):
    rows = [f"2021-03-{1 + i % 5:02d},{i}" for i in range(40)]
    rows[-1] = "2021-02-30,39"  # sampled as dates, one is not a date
    schema, train, _ = ingest(DataConfig(path=str(_csv(tmp_path / "d.csv", "when,n", rows))))
    assert schema["when"].kind == "categorical" and "1 values are not dates" in schema["when"].note
    zoned = [f"2021-03-{1 + i % 28:02d}T10:00:00{'+01:00' if i % 2 else '-08:00'},{i}" for i in range(40)]
    schema, train, _ = ingest(DataConfig(path=str(_csv(tmp_path / "z.csv", "when,n", zoned))))
    assert schema["when"].kind == "datetime" and str(train["when"].dt.tz) == "UTC"


def test_unknown_encoding_names_the_key(tmp_path):
    path = _csv(tmp_path / "e.csv", "a", [str(i) for i in range(20)])
    with pytest.raises(DataError, match=r"unknown text encoding 'no-such-codec' \(data.encoding"):
        read_table(path, "no-such-codec")


def test_numbers_too_large_to_model_are_refused(tmp_path):
    path = _csv(tmp_path / "big.csv", "x,y", [f"{(-1) ** i * 1e300},k{i % 2}" for i in range(30)])
    with pytest.raises(DataError, match=r"column 'x' has values as large as 1e\+300"):
        ingest(DataConfig(path=str(path)))
    path = _csv(tmp_path / "ok.csv", "x,y", [f"{(-1) ** i * 1e100 * (i + 1)},k{i % 2}" for i in range(30)])
    assert ingest(DataConfig(path=str(path)))[0]["x"].max > 1e101  # large, not too large

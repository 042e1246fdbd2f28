"""Bounded memory (issue 16): the level cap in validation, exact sparse pair tables and
capped distances, neighbour blocks, streamed image ingest, chunked sampling and the
pyfunc's row limit. Every test is small and fast; bench/bounded_memory.py measures."""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import pytest

from synthgen.data.schema import conform, infer_schema
from synthgen.transformers.prepare import TablePreparer
from synthgen.validation import fidelity
from synthgen.validation.detection import detection_report, feature_groups
from synthgen.validation.encoding import MAX_CATEGORIES, MixedEncoder, nearest
from synthgen.validation.privacy import privacy_filter, privacy_report


def _wide(n: int, levels: int, seed: int) -> pd.DataFrame:
    """A categorical ``code`` whose level i is drawn in proportion to i + 1 (no ties in
    frequency, so the kept levels are unambiguous), another one ``code2`` and a number."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, levels + 1, dtype=float)
    codes = rng.choice(levels, n, p=weights / weights.sum())
    return pd.DataFrame({
        "code": [f"L{c:04d}" for c in codes],
        "code2": [f"M{c:04d}" for c in rng.integers(0, levels, n)],
        "x": rng.normal(size=n) + codes / levels,
    })


@pytest.fixture(scope="module")
def wide():
    train = _wide(3000, 300, 0)
    schema = infer_schema(train)
    for name in ("code", "code2"):
        schema[name].kind = "categorical"
    return schema, conform(train, schema), conform(_wide(1500, 300, 1), schema)


def test_validation_keeps_the_levels_training_keeps(wide):
    schema, train, syn = wide
    enc = MixedEncoder.fit(train, schema, others=[syn], max_categories=20)
    prep = TablePreparer(schema, max_categories=20).fit(train)
    code = enc.discrete.index("code")
    assert set(enc.levels[code]) == set(prep.kept_levels_["code"])  # the same 19 most frequent
    assert len(enc.levels[code]) == 19 and enc.capped
    features = enc.features(syn)
    assert features.shape == (len(syn), 1 + 2 * 20)  # x, then 19 kept + "other" per categorical
    assert enc.transform(syn).shape[1] == enc.width == 1 + 2 * 20
    groups = feature_groups(enc)
    assert len(groups["code"]) == 20 and sorted(sum(groups.values(), [])) == list(range(features.shape[1]))
    # the default is training's default cap; under it nothing changes
    assert MAX_CATEGORIES == 500
    every = len(set(train["code"]) | set(syn["code"]))
    assert len(MixedEncoder.fit(train, schema, others=[syn]).levels[code]) == every
    assert len(MixedEncoder.fit(train, schema, others=[syn], max_categories=None).levels[code]) == every


def test_capped_distances_stay_exact(wide):
    schema, train, syn = wide
    free = MixedEncoder.fit(train, schema, others=[syn], max_categories=None)
    capped = MixedEncoder.fit(train, schema, others=[syn], max_categories=10)
    query, ref = syn.iloc[:200], train.iloc[:400]
    exact, _ = nearest(free.transform(query), free.transform(ref), 3, n_candidates=len(ref))
    pooled, _ = nearest(capped.encode(query), capped.encode(ref), 3, n_candidates=len(ref))
    assert pooled == pytest.approx(exact, abs=1e-6)
    # without the pooled codes two rare levels would look equal: strictly smaller distances
    blind, _ = nearest(capped.transform(query), capped.transform(ref), 3, n_candidates=len(ref))
    assert (blind <= exact + 1e-6).all() and (blind < exact - 1e-6).any()
    # every privacy metric agrees with the uncapped encoding (the proxy sees pooled mismatches too)
    hold = syn.iloc[1000:].reset_index(drop=True)
    a, b = (privacy_report(train, syn.iloc[:1000], schema, hold, ["x"], max_categories=cap, n_attack=300)["metrics"]
            for cap in (None, 10))
    assert set(a) == set(b) and all(v is not None for v in a.values())
    assert all(b[k] == pytest.approx(a[k], abs=1e-6) for k in a), (a, b)


def test_neighbour_blocks_do_not_change_results():
    rng = np.random.default_rng(0)
    ref, query = rng.random((300, 40), dtype=np.float32), rng.random((120, 40), dtype=np.float32)
    whole = nearest(query, ref, 2)
    tiny = nearest(query, ref, 2, block_bytes=1)  # one query row per block
    assert np.array_equal(whole[1], tiny[1]) and whole[0] == pytest.approx(tiny[0])
    full = nearest(query, ref, 2, n_candidates=len(ref), block_bytes=4096)
    assert full[0] == pytest.approx(np.sort(np.abs(query[:, None] - ref[None]).sum(-1), axis=1)[:, :2], abs=1e-4)


def test_privacy_filter_in_blocks_matches_one_block(wide, monkeypatch):
    schema, train, syn = wide
    kept, dropped = privacy_filter(syn, train, 0.2, schema, max_categories=None)
    import synthgen.validation.privacy as privacy

    monkeypatch.setattr(privacy, "NN_BLOCK_BYTES", 4 * 700 * 50)  # 50 rows per block
    kept_b, dropped_b = privacy_filter(syn, train, 0.2, schema, max_categories=10)
    assert dropped_b == dropped and kept_b.index.equals(kept.index)


def test_pair_tables_of_two_wide_columns_are_sparse_and_exact(wide, monkeypatch):
    schema, train, syn = wide
    dense = fidelity.fidelity_report(train, syn, schema)
    monkeypatch.setattr(fidelity, "DENSE_CELLS", 16)  # every pair table counted sparsely
    sparse = fidelity.fidelity_report(train, syn, schema)
    assert sparse["pairs"] == pytest.approx(dense["pairs"], abs=1e-12)
    assert sparse["quality_score"] == pytest.approx(dense["quality_score"], abs=1e-12)


def test_detection_features_are_capped(wide):
    schema, train, syn = wide
    report = detection_report(train, syn, schema, max_rows=300, explain=False, max_categories=8)
    assert report["detection_auc"] is not None


def test_validation_cap_reaches_the_verdict(wide, monkeypatch):
    from synthgen.config import ValidateConfig
    from synthgen.validation import verdict

    schema, train, syn = wide
    seen = []
    real_fit = MixedEncoder.fit.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("max_categories", MAX_CATEGORIES))
        return real_fit(cls, *args, **kwargs)

    monkeypatch.setattr(MixedEncoder, "fit", classmethod(spy))
    verdict.validate_synthetic(train.iloc[:600], syn.iloc[:300], schema, ValidateConfig(), holdout=syn.iloc[300:600],
                               max_categories=12)
    assert seen and set(seen) <= {12, None}  # None: only encoders of codes (never one-hot)
    assert 12 in seen


def test_image_folder_is_read_one_full_image_at_a_time(tmp_path, monkeypatch):
    from PIL import Image

    from synthgen.data import images

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    decoded: list[weakref.ref] = []
    most_alive = [0]
    real_open = images._open

    def spy(path, decode=True):
        img = real_open(path, decode)
        if decode:
            most_alive[0] = max(most_alive[0], 1 + sum(r() is not None for r in decoded))
            decoded.append(weakref.ref(img))
        return img

    monkeypatch.setattr(images, "_open", spy)
    data = images.read_images(tmp_path, image_size=8)
    assert data.images.shape == (6, 8, 8, 3) and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(decoded) == 6 and most_alive[0] == 1  # never two full-resolution images at once
    monkeypatch.setattr(images, "_open", real_open)
    assert np.array_equal(images.read_images(tmp_path, image_size=8).images, data.images)


def test_float_npz_is_scaled_per_image(tmp_path):
    from synthgen.data.images import read_images

    arr = np.random.default_rng(0).random((5, 8, 8, 1))
    np.savez(tmp_path / "f.npz", images=arr)
    out = read_images(tmp_path / "f.npz", image_size=8)
    assert np.array_equal(out.images, np.round(arr * 255).astype(np.uint8))


# -- chunked sampling ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan():
    from synthgen.config import ModelConfig
    from synthgen.synthesizers import REGISTRY

    from tests.conftest import PENGUINS
    from tests.tiny import TINY_GAN

    table = pd.read_csv(PENGUINS)
    table.insert(0, "penguin_id", np.arange(1, len(table) + 1))
    table["year"] = table["year"].astype("Int64")
    table.loc[::7, "year"] = pd.NA  # a nullable integer column that is sometimes missing
    schema = infer_schema(table, id_columns=["penguin_id"])
    table = conform(table, schema)
    return REGISTRY["tabular_gan"](schema, ModelConfig(**{**TINY_GAN, "epochs": 1})).fit(table)


def test_one_chunk_is_the_single_pass_draw(gan):
    """Up to one chunk, sample() is one _draw with the seed's generator, as before chunking."""
    one = gan.sample(300, seed=5)
    assert one.equals(gan._draw(300, None, np.random.default_rng(5)))
    assert one["penguin_id"].tolist() == list(range(1, 301))


def test_chunks_are_deterministic_and_join_to_sample(gan, monkeypatch):
    monkeypatch.setattr(gan, "sample_chunk", 64)
    drawn = []
    real_draw = gan._draw
    monkeypatch.setattr(gan, "_draw", lambda n, c, rng: drawn.append(n) or real_draw(n, c, rng))
    whole = gan.sample(300, seed=5)
    assert drawn == [64, 64, 64, 64, 44]  # never one pass over all rows
    assert whole.equals(gan.sample(300, seed=5)) and len(whole) == 300
    parts = list(gan.iter_sample(300, seed=5))
    assert [len(p) for p in parts] == [64, 64, 64, 64, 44]
    assert pd.concat(parts, ignore_index=True).equals(whole)
    # documented: chunk k is the k-th _draw on one generator; ids continue across chunks
    rng = np.random.default_rng(5)
    first, second = real_draw(64, None, rng), real_draw(64, None, rng)
    assert whole.iloc[:64].equals(first)
    assert whole.iloc[64:128].drop(columns="penguin_id").reset_index(drop=True).equals(
        second.drop(columns="penguin_id"))
    assert whole["penguin_id"].tolist() == list(range(1, 301))
    assert str(whole["year"].dtype) == "Int64"
    conditioned = gan.sample(150, conditions={"species": "Adelie"}, seed=1)
    assert (conditioned["species"] == "Adelie").all() and len(conditioned) == 150


def test_bad_chunk_and_rows_are_condition_errors(gan):
    from synthgen.errors import ConditionError

    with pytest.raises(ConditionError, match="sample chunk"):
        gan.iter_sample(10, chunk=0)
    with pytest.raises(ConditionError, match="positive integer"):
        gan.iter_sample(0)


def test_image_chunks_join_field_wise():
    from synthgen.synthesizers.base import Synthesizer
    from synthgen.synthesizers.image_cgan.synthesizer import GeneratedImages

    parts = [GeneratedImages(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1])),
             GeneratedImages(np.ones((1, 4, 4, 1), np.uint8), np.array([1]))]
    joined = Synthesizer._concat(parts)
    assert isinstance(joined, GeneratedImages) and joined.images.shape == (3, 4, 4, 1)
    assert joined.labels.tolist() == [0, 1, 1]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_sample_file_is_written_chunk_by_chunk(gan, tmp_path, monkeypatch, suffix):
    from synthgen.consume import sample_to_file, write_sample
    from synthgen.synthesizers.base import Synthesizer

    monkeypatch.setattr(Synthesizer, "sample_chunk", 64)
    gan.save(tmp_path / "model")
    out = tmp_path / f"rows{suffix}"
    frame = sample_to_file(tmp_path / "model", 300, out, seed=3, allow_unvalidated=True)
    expected = gan.sample(300, seed=3)
    assert frame.equals(expected) and frame.attrs["rows"] == 300
    back = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(back) == 300 and list(back.columns) == list(expected.columns)
    if suffix == ".parquet":
        assert back.equals(expected)  # dtypes too: nullable Int64 in every row group
        import pyarrow.parquet as pq

        assert pq.ParquetFile(out).metadata.num_row_groups == 5
    else:
        assert back["penguin_id"].tolist() == list(range(1, 301))
        assert back["body_mass_g"].to_numpy() == pytest.approx(expected["body_mass_g"].to_numpy(dtype=float),
                                                               nan_ok=True)
    lean = write_sample(gan, 300, tmp_path / f"lean{suffix}", seed=3, keep=False)
    assert len(lean) == 0 and lean.attrs["rows"] == 300 and list(lean.columns) == list(expected.columns)
    assert (tmp_path / f"lean{suffix}").read_bytes() == out.read_bytes()


# -- the pyfunc's row limit ---------------------------------------------------------------------
def test_pyfunc_refuses_requests_over_the_row_limit(gan, monkeypatch):
    from synthgen.errors import ConditionError
    from synthgen.synthesizers import requests
    from synthgen.tracking.gate import Verdict
    from synthgen.tracking.pyfunc import SynthgenGenerator

    served = SynthgenGenerator()
    served.synthesizer, served.verdict = gan, Verdict(True)
    assert requests.MAX_REQUEST_ROWS == 1_000_000 and requests.MAX_REQUEST_IMAGES == 10_000
    drawn = []
    monkeypatch.setattr(gan, "_draw", lambda *a: drawn.append(a) or pd.DataFrame())
    with pytest.raises(ConditionError, match=r"asks for 1,000,001 rows in all; one call returns at most 1,000,000"):
        served.predict(None, pd.DataFrame({"rows": [1_000_001]}))
    with pytest.raises(ConditionError, match="MAX_REQUEST_ROWS"):  # summed over the request rows
        served.predict(None, pd.DataFrame({"rows": [600_000, 400_001], "seed": [1, 2]}))
    with pytest.raises(ConditionError, match="synthgen sample --rows N --out FILE"):
        served.predict(None, pd.DataFrame({"rows": [10**9]}))
    assert drawn == []  # refused before anything was drawn
    monkeypatch.undo()
    monkeypatch.setattr(requests, "MAX_REQUEST_ROWS", 50)
    assert len(served.predict(None, pd.DataFrame({"rows": [20, 30], "seed": [1, 2]}))) == 50
    with pytest.raises(ConditionError, match="51 rows"):
        served.predict(None, pd.DataFrame({"rows": [51]}))


def test_image_requests_have_their_own_limit():
    from types import SimpleNamespace

    from synthgen.errors import ConditionError
    from synthgen.synthesizers.requests import SampleRequest, check_request_size

    images = SimpleNamespace(data_kind="image")
    assert check_request_size(images, [SampleRequest(10_000)]) == 10_000
    with pytest.raises(ConditionError, match="10,001 images.*MAX_REQUEST_IMAGES"):
        check_request_size(images, [SampleRequest(5_000), SampleRequest(5_001)])


def test_reference_in_blocks(wide, monkeypatch):
    from synthgen.validation import encoding
    from synthgen.validation.encoding import nearest_in_blocks

    rng = np.random.default_rng(1)
    ref, query = rng.random((500, 8), dtype=np.float32), rng.random((60, 8), dtype=np.float32)
    exact = nearest(query, ref, 3, n_candidates=len(ref))
    blocked = nearest_in_blocks(query, np.array_split(ref, 7), 3, n_candidates=len(ref))
    assert blocked[0] == pytest.approx(exact[0]) and np.array_equal(blocked[1], exact[1])
    approx = nearest(query, ref, 1)
    assert (nearest_in_blocks(query, np.array_split(ref, 7), 1)[0] <= approx[0] + 1e-7).all()
    # the synthetic table as a reference is encoded a block at a time; one block = one search
    schema, train, syn = wide
    hold = syn.iloc[1000:1400].reset_index(drop=True)
    whole = privacy_report(train, syn.iloc[:400], schema, hold, ["x"], max_categories=10, n_attack=300)["metrics"]
    monkeypatch.setattr(encoding, "NN_BLOCK_BYTES", 4 * 21 * 100)  # 100 encoded rows per block
    enc = MixedEncoder.fit(train, schema, others=[syn], max_categories=10)
    assert [len(b) for b in enc.encode_blocks(syn.iloc[:250])] == [100, 100, 50]
    blocks = privacy_report(train, syn.iloc[:400], schema, hold, ["x"], max_categories=10, n_attack=300)["metrics"]
    assert blocks["mia_auc_distance"] == pytest.approx(whole["mia_auc_distance"], abs=0.02)
    assert blocks["dcr_synthetic_median"] == whole["dcr_synthetic_median"]  # train is one reference

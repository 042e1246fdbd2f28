"""The feature-space math of the image metrics: distances between two sets of vectors.

Fréchet distance (:func:`frechet_distance`, :func:`fid_from_features`), the kernel
(Inception) distance (:func:`kernel_distance`, unbiased MMD² over random subsets),
precision / recall / density / coverage of Naeem et al. (:func:`prdc`), nearest-neighbour
distances (:func:`nearest_neighbours`, :func:`nearest_distances`) and byte-identical copies
(:func:`exact_copy_mask`). numpy, with torch on CPU for the matrix products. What these mean for generated
images is in :mod:`synthgen.validation.images.report`.
"""

from __future__ import annotations

import numpy as np
import torch

from synthgen.errors import DataError

KID_SUBSETS = 100  # KID: number of random subsets averaged (as torch-fidelity / torchmetrics)
KID_SUBSET_SIZE = 1000  # KID: images per side and subset, lowered to the smaller set
KID_DEGREE = 3  # KID: degree of the polynomial kernel (x.y / d + 1) ** degree
PRDC_K = 5  # precision/recall/density/coverage: k of the k-NN balls (Naeem et al.)
_KID_PRECOMPUTE = 4000  # KID: up to this many rows in all, whole kernel matrices are computed once
FID_EPS = 1e-6  # added to the covariance diagonals when their product has no finite root


# -- distances (numpy, scipy; torch on CPU for the products) ----------------------------
def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((sigma1 sigma2)^½)`` of two covariance matrices, as ``tr((A sigma2 A)^½)`` with
    ``A = sigma1^½``: two symmetric eigendecompositions (negative rounding eigenvalues
    clipped at 0) instead of a general matrix root, ~30x faster at d = 400 and exact for
    singular covariances (fewer images than features, dead units)."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = root @ sigma2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = FID_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½)``, the trace of the root
    taken through symmetric eigendecompositions (:func:`_trace_sqrt_product`; pytorch-fid's
    ``scipy.linalg.sqrtm`` gives the same value to ~1e-8 relative, far slower). ``eps``
    (default 1e-6) is added to both diagonals only when a covariance is not finite-valued
    after that (it never is for finite inputs). The result is clipped at 0 (rounding can
    give -1e-12 for equal inputs).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    try:
        trace_root = _trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError:
        offset = np.eye(len(sigma1)) * eps
        trace_root = _trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root
    return max(float(value), 0.0)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two (n, d) feature sets (n ≥ 2 each)."""
    return frechet_distance(*_gaussian(features_a), *_gaussian(features_b))


def _kernel(a: torch.Tensor, b: torch.Tensor, degree: int) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1.0).pow_(degree)


def _mmd2_unbiased(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    """Unbiased MMD² from the three kernel matrices of two samples."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def _mmd2_masked(kaa: torch.Tensor, kbb: torch.Tensor, kab: torch.Tensor, wa: torch.Tensor,
                 wb: torch.Tensor) -> float:
    """:func:`_mmd2_unbiased` of the subsets marked by 0/1 vectors, from whole kernels
    (sums of a subset's block are ``w @ K @ w``: no gathering)."""
    m, n = float(wa.sum()), float(wb.sum())
    saa = wa @ kaa @ wa - (kaa.diagonal() * wa).sum()
    sbb = wb @ kbb @ wb - (kbb.diagonal() * wb).sum()
    return float(saa / (m * (m - 1)) + sbb / (n * (n - 1)) - 2.0 * (wa @ kab @ wb) / (m * n))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, *, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, degree: int = KID_DEGREE,
                    seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD² with the kernel ``(x·y / d + 1) ** degree``, over subsets.

    Args:
        features_a, features_b: (n, d) and (m, d) feature sets, at least 2 rows each.
        subsets: random subsets averaged; default 100.
        subset_size: rows per side and subset; default 1000, lowered to
            ``min(n, m)`` (a subset of the whole set is the whole set).
        degree: polynomial degree; default 3.
        seed: seed of the subset draws; default 0.

    Returns:
        ``(mean, std)`` over subsets.
    """
    a = torch.from_numpy(np.asarray(features_a, dtype=np.float64))
    b = torch.from_numpy(np.asarray(features_b, dtype=np.float64))
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise DataError(f"KID needs at least 2 feature rows per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    whole = len(a) + len(b) <= _KID_PRECOMPUTE  # small sets: kernels once, subsets by indexing
    if whole:
        kaa, kbb, kab = _kernel(a, a, degree), _kernel(b, b, degree), _kernel(a, b, degree)
    values = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(len(a), size, replace=False))
        j = torch.from_numpy(rng.choice(len(b), size, replace=False))
        if whole:
            wa, wb = torch.zeros(len(a), dtype=a.dtype), torch.zeros(len(b), dtype=b.dtype)
            wa[i], wb[j] = 1.0, 1.0
            values.append(_mmd2_masked(kaa, kbb, kab, wa, wb))
        else:
            x, y = a[i], b[j]
            values.append(_mmd2_unbiased(_kernel(x, x, degree), _kernel(y, y, degree), _kernel(x, y, degree)))
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) between the rows of a and b (torch, so that
    ``torch.set_num_threads`` bounds the threads)."""
    ta = torch.from_numpy(np.asarray(a, dtype=np.float64))
    tb = torch.from_numpy(np.asarray(b, dtype=np.float64))
    return torch.cdist(ta, tb).numpy()


def knn_radii(points: np.ndarray, k: int = PRDC_K) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (the radii of :func:`prdc`'s balls)."""
    return np.partition(_pairwise(points, points), k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K, real_radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of Naeem et al. (2020).

    Each real point's ball has the radius of its k-th nearest real neighbour (itself
    excluded); each fake point's ball likewise among fakes (for recall).

    Args:
        real: (n, d) real features, n > k.
        fake: (m, d) generated features, m > k.
        k: neighbours defining the balls; default 5.
        real_radii: ``knn_radii(real, k)`` when already computed (several fake sets
            scored against one real set); default None = computed here.

    Returns:
        ``{"precision", "recall", "density", "coverage"}``.
    """
    if len(real) <= k or len(fake) <= k:
        raise DataError(f"precision/recall need more than k={k} images per set, "
                        f"got {len(real)} real and {len(fake)} generated")
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k)
    d_rf = _pairwise(real, fake)  # (n_real, n_fake)
    inside = d_rf < real_radii[:, None]
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d_rf < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < real_radii).mean()),
    }


def fid_to_gaussian(features: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fitted to (n, d) ``features`` and N(mu, sigma).

    Equal to :func:`fid_from_features` against a set with that mean and covariance. With
    fewer rows than features (n − 1 < d) the root's trace comes from the n × n matrix
    ``X sigma Xᵀ / (n − 1)`` of the centred rows X (its eigenvalues are the non-zero ones
    of ``sigma_x sigma``): a few milliseconds at n = 100, d = 400.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    centred = x - x.mean(axis=0)
    diff = x.mean(axis=0) - mu
    if n - 1 >= x.shape[1]:
        return frechet_distance(x.mean(axis=0), np.cov(x, rowvar=False), mu, sigma)
    middle = centred @ sigma @ centred.T / (n - 1)
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum())
    value = diff @ diff + (centred**2).sum() / (n - 1) + np.trace(sigma) - 2.0 * trace_root
    return max(float(value), 0.0)


def kernel_offdiag_mean(features: np.ndarray, degree: int = KID_DEGREE) -> float:
    """Mean of KID's kernel over distinct pairs of rows of (n, d) ``features`` (n ≥ 2)."""
    x = torch.from_numpy(np.asarray(features, dtype=np.float64))
    k = _kernel(x, x, degree)
    return float((k.sum() - k.diagonal().sum()) / (len(x) * (len(x) - 1)))


def mmd2_unbiased(features_a: np.ndarray, features_b: np.ndarray, degree: int = KID_DEGREE,
                  kbb_offdiag_mean: float | None = None) -> float:
    """Unbiased MMD² of two whole sets (≥ 2 rows each) with KID's kernel
    ``(x·y / d + 1) ** degree``, no subsets. ``kbb_offdiag_mean``:
    ``kernel_offdiag_mean(features_b)`` when already known (one reference set, many
    others); default None = computed here."""
    if kbb_offdiag_mean is None:
        kbb_offdiag_mean = kernel_offdiag_mean(features_b, degree)
    a = torch.from_numpy(np.asarray(features_a, dtype=np.float64))
    b = torch.from_numpy(np.asarray(features_b, dtype=np.float64))
    return kernel_offdiag_mean(features_a, degree) + kbb_offdiag_mean - 2.0 * float(_kernel(a, b, degree).mean())


def nearest_neighbours(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest reference row, and that row's index.

    Rows may be any numeric dtype (e.g. flattened uint8 images); blocks of ``chunk``
    rows are converted to float64 on the fly: ``torch.cdist``'s matrix-product form
    leaves ~0.02 instead of 0 between identical 3072-d rows in float32, ~1e-6 in float64.
    Ties go to the lowest index.
    """
    out = np.full(len(query), np.inf)
    index = np.zeros(len(query), dtype=np.int64)
    for r0 in range(0, len(reference), chunk):
        ref = torch.from_numpy(np.asarray(reference[r0:r0 + chunk], dtype=np.float64))
        for q0 in range(0, len(query), chunk):
            q = torch.from_numpy(np.asarray(query[q0:q0 + chunk], dtype=np.float64))
            best = torch.cdist(q, ref).min(dim=1)
            dist, where = best.values.numpy(), best.indices.numpy() + r0
            closer = dist < out[q0:q0 + chunk]
            out[q0:q0 + chunk][closer] = dist[closer]
            index[q0:q0 + chunk][closer] = where[closer]
    return out, index


def nearest_distances(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row (:func:`nearest_neighbours`)."""
    return nearest_neighbours(query, reference, chunk)[0]


def exact_copy_mask(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """True for each query image byte-identical to some reference image (same shape)."""
    seen = {row.tobytes() for row in reference.reshape(len(reference), -1)}
    return np.array([row.tobytes() in seen for row in query.reshape(len(query), -1)], dtype=bool)

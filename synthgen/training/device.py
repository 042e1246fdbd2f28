"""Device choice shared by every family: ``device: auto`` -> cuda, then mps, else cpu."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, then ``mps``, else ``cpu``; others as given."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def adam(params, device, fused: bool = True, **kwargs):
    """``torch.optim.Adam`` with its fused kernel where torch has one (CPU and CUDA): the
    same update in one kernel per step instead of several per parameter, about 3x faster
    per optimizer step on CPU. ``fused=False`` (e.g. under an Opacus DP optimizer, which
    rewrites gradients before ``step``) keeps the per-tensor implementation."""
    import torch

    kind = torch.device(device).type
    return torch.optim.Adam(params, fused=fused and kind in ("cpu", "cuda"), **kwargs)

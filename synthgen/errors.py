"""Named errors for synthgen.

Every error a user can cause derives from :class:`SynthgenError`; the CLI turns
it into one line on stderr and exit code 2 (bad input or config). A failed
validation verdict is not an error: it is exit code 1.
"""

from __future__ import annotations


class SynthgenError(Exception):
    """Base class for errors caused by input, config or state the user controls."""

    exit_code = 2


class ConfigError(SynthgenError):
    """A params file or ``--set`` override is wrong (names the key)."""


class DataError(SynthgenError):
    """An input data file or column is unusable (names the file or column)."""


class ModelError(SynthgenError):
    """A model directory cannot be loaded, or a synthesizer is misused."""


class ConditionError(SynthgenError):
    """Sampling conditions name an unknown column or an impossible value."""


class TrackingError(SynthgenError):
    """The tracking server cannot be reached or refuses the run."""


class BusyError(SynthgenError):
    """Another synthgen process is writing the same output directory (names the holder)."""

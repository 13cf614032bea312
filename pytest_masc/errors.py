"""Exceptions (and the one warning) pytest-masc raises. Each message names the file or option at fault."""
from __future__ import annotations


class MaSCError(Exception):
    """Base class of every error pytest-masc raises on purpose."""


class InputError(MaSCError, ValueError):
    """An image, mask or prompt that cannot be scored; the message names the input."""


class ModelLoadError(MaSCError, OSError):
    """A checkpoint cannot be found, downloaded or loaded, or is not of the kind needed."""


class SegmenterLoadError(ModelLoadError):
    """The segmenter's checkpoint (``--masc-segmenter``, ``load_segmenter``) cannot be loaded."""


class DeviceError(MaSCError, RuntimeError):
    """The requested device is not available, or a batch does not fit on it."""


class SuiteError(MaSCError, ValueError):
    """A suite file (``masc_*.toml`` or its cases CSV) is malformed."""


class PromptTruncatedWarning(UserWarning):
    """A prompt is longer than the text tower's context and was cut to fit."""


class EmptyMaskError(InputError):
    """A segmenter found nothing of the subject in an image, so there is no mask to score with."""


class MaskCoverageWarning(UserWarning):
    """A computed mask covers (nearly) the whole image: the segmenter probably did not find the subject."""

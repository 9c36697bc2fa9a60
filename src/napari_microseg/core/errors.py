"""Exceptions raised by the core, each carrying a message fit for a user."""


class MicrosegError(Exception):
    """Base class: the message is meant to be shown to the user as is."""


class UnsupportedFormatError(MicrosegError):
    """The file's format is not one napari-microseg can read."""


class CorruptFileError(MicrosegError):
    """The file exists but cannot be decoded (truncated, damaged, wrong extension)."""


class InvalidImageError(MicrosegError):
    """The decoded data is not a usable micrograph (wrong shape, too small, ...)."""


class CalibrationError(MicrosegError):
    """A pixel size is missing, not positive, or not understood."""


class LabelsError(MicrosegError):
    """A labels image or annotation file is malformed."""

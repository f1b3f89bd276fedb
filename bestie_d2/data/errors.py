"""Errors raised for bad data-set inputs.

Every error names the offending file (and the 1-based line number for text files), so a user
can go straight to the problem. All derive from :class:`BestieDataError` (a ``ValueError``);
missing files/folders additionally derive from ``FileNotFoundError``.
"""
from typing import Optional

__all__ = [
    "BestieDataError",
    "MissingDataError",
    "PointsFileError",
    "ListFileError",
    "DuplicateIdError",
    "ClassIdError",
    "AnnotationError",
    "ImageSizeMismatchError",
    "WSSSMapError",
    "DataCheckError",
    "LabelConventionError",
    "EmptyPseudoLabelsError",
]


class BestieDataError(ValueError):
    """Base class of every data-input error. ``path`` and ``line`` (1-based) when known."""

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
            message = f"{where}: {message}"
        self.message = message
        # One positional argument only: OSError subclasses would otherwise reinterpret them.
        super().__init__(message)

    def __str__(self):
        return self.message

    def __reduce__(self):  # picklable across data-loader workers
        return (type(self), (self.reason, self.path, self.line))


class MissingDataError(BestieDataError, FileNotFoundError):
    """A data root, folder or file (image, list, cue file, WSSS map, json) does not exist."""


class PointsFileError(BestieDataError):
    """A cue/points file line is malformed (field count, number, range, position)."""


class ListFileError(BestieDataError):
    """An image-list or image-label file is empty or has a malformed line."""


class DuplicateIdError(ListFileError):
    """An image id appears twice in a list or label file."""


class ClassIdError(BestieDataError):
    """A class id outside 0..C-1 (or a semantic value outside 0..C, 255) was found."""


class AnnotationError(BestieDataError):
    """A ground-truth annotation (PNG label map, COCO json) is unreadable or inconsistent."""


class ImageSizeMismatchError(BestieDataError):
    """A label map (WSSS map, SegmentationClass/Object PNG) does not have the image's size."""


class WSSSMapError(BestieDataError):
    """A WSSS semantic map is unreadable, has an unsupported image mode, or colours outside the VOC palette."""


class DataCheckError(BestieDataError):
    """The up-front check of the training inputs found problems (``bestie_d2.data.input_check``).

    ``problems``: one line per bad file (file, line, reason); ``report_file``: where the full list
    was written, if anywhere."""

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None,
                 problems=(), report_file: Optional[str] = None):
        super().__init__(message, path, line)
        self.problems = list(problems)
        self.report_file = report_file

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.line, self.problems, self.report_file))


class LabelConventionError(DataCheckError, ClassIdError):
    """Cues / WSSS maps disagree with the image labels on too many images of a data set: the class
    convention is likely wrong (1-based cue classes, WSSS maps without the background shift, ...)."""


class EmptyPseudoLabelsError(BestieDataError):
    """A pseudo-label json (the Mask R-CNN stage's training set) holds no instance at all."""

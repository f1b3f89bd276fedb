"""bestie_d2 data: cue files, the toy data set, data-set registration.

Light imports only; the mappers / targets live in their own modules
(``bestie_d2.data.mappers``, ``bestie_d2.data.target_generator``).
"""
from .errors import (
    AnnotationError,
    BestieDataError,
    ClassIdError,
    DataCheckError,
    DuplicateIdError,
    ImageSizeMismatchError,
    LabelConventionError,
    ListFileError,
    MissingDataError,
    PointsFileError,
    WSSSMapError,
)
from .points import filter_by_confidence, read_points, write_points
from .toy import TOY_CLASSES, generate_toy_dataset

__all__ = [
    "AnnotationError",
    "BestieDataError",
    "ClassIdError",
    "DataCheckError",
    "DuplicateIdError",
    "ImageSizeMismatchError",
    "LabelConventionError",
    "ListFileError",
    "MissingDataError",
    "PointsFileError",
    "TOY_CLASSES",
    "WSSSMapError",
    "filter_by_confidence",
    "generate_toy_dataset",
    "read_points",
    "write_points",
]

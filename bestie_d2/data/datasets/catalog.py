"""Registration helpers shared by the data-set modules (double-registration guard, name check)."""
import difflib
import hashlib
import logging
import os
from typing import Callable, Dict

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["register_dataset", "get_datasets_root", "check_dataset"]

logger = logging.getLogger(__name__)


def get_datasets_root() -> str:
    """``$BESTIE_DATASETS``, else ``$DETECTRON2_DATASETS``, else ``./datasets`` (absolute path)."""
    root = os.environ.get("BESTIE_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"
    return os.path.abspath(os.path.expanduser(root))


def register_dataset(
    name: str,
    loader: Callable[[], list],
    metadata: Dict,
    key: str,
    *,
    overwrite: bool = False,
    replace_foreign: bool = False,
) -> bool:
    """Register ``name`` in DatasetCatalog/MetadataCatalog; returns True when (re)registered.

    ``key`` describes the registration's parameters (its hash is stored as metadata ``bestie_key``).
    Registering the same name with the same key again does nothing. Another bestie_d2
    registration under the name is an error unless ``overwrite``; a registration made by
    someone else (e.g. detectron2's own ``voc_2012_val`` detection set) is replaced only with
    ``replace_foreign`` or ``overwrite``.
    """
    key = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    if name in DatasetCatalog.list():
        old_key = getattr(MetadataCatalog.get(name), "bestie_key", None)
        if old_key == key and not overwrite:
            return False
        if not (overwrite or (old_key is None and replace_foreign)):
            who = "bestie_d2 with other parameters" if old_key is not None else "another library"
            raise ValueError(
                f"Data set {name!r} is already registered (by {who}). Use another name, or pass "
                "overwrite=True to replace it."
            )
        logger.debug("Replacing the registration of data set %r", name)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(bestie_key=key, **metadata)
    return True


def check_dataset(name: str) -> None:
    """Raise a ``KeyError`` naming up to five close matches if ``name`` is not a registered data set."""
    names = DatasetCatalog.list()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"data set {name!r} is not registered{hint} (known: {len(names)} names, "
                       "e.g. bestie_toy_train, voc_2012_train_aug, bestie_coco_2017_train)")

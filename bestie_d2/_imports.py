"""Import helper for registration modules."""
import importlib

__all__ = ["import_registering_modules"]


def import_registering_modules(package: str, names):
    """Import ``package.name`` for each name; their import registers models/backbones/data sets.

    A module that does not exist in this checkout is skipped; any other import error propagates.
    """
    for name in names:
        full = f"{package}.{name}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name and full.startswith(e.name) and e.name.startswith(package):
                continue
            raise

"""The ``grid`` stage: one PNG of what the run learnt from (:func:`~bestie_d2.visualization.demo_grid.demo_grid`):
training images with their pseudo labels (maps + cues), test images with the trained BESTIE's
center map, offsets and instances. Runs in the main process only."""
from typing import Optional

from ...visualization.demo_grid import demo_grid
from .export import load_trained_model

__all__ = ["grid_stage"]


def grid_stage(cfg, test: str, train: str, path: str, *, wsss_dir: Optional[str], cues_dir: Optional[str],
               num_images: int = 4) -> dict:
    """Write the grid of ``num_images`` train and test images to ``path`` with the BESTIE of
    ``cfg`` (``MODEL.WEIGHTS``); ``cues_dir`` None = no cue dots (point route). Returns ``{"grid"}``."""
    model = load_trained_model(cfg)
    demo_grid(cfg, model, test, path, num_images=num_images, train_dataset=train, wsss_dir=wsss_dir,
              cues_dir=cues_dir)
    return {"grid": path}

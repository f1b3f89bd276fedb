#!/usr/bin/env python
"""Write point labels (``Center_points/<id>.txt``) from VOC / COCO instance masks or a PointSup json.

The same as ``bestie-prepare-points`` / ``python -m bestie_d2.tools.prepare_points`` (see that
module for the rules and options), e.g.::

    python datasets/prepare_points.py --voc-root datasets/VOC2012 --split train_aug --sbd-root datasets/SBD/dataset
"""
import os
import sys

if __name__ == "__main__":
    try:
        import bestie_d2  # noqa: F401  (prepares detectron2)
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bestie_d2.tools.prepare_points import main

    sys.exit(main())

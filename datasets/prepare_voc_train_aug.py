#!/usr/bin/env python
"""Build the VOC 2012 *train_aug* image list and the image-level label files.

train_aug = (VOC2012 seg. train  ∪  SBD train  ∪  SBD val)  −  VOC2012 seg. val
(10,582 images with the official VOC2012 and SBD releases).

Writes (under ``--voc-root`` unless ``--out-root`` is given)::

    ImageSets/Segmentation/train_aug.txt   one id per line, sorted
    cls_labels/train_aug_cls.txt           "<id> c1 c2 ..." (c = class index 0..19, sorted)
    cls_labels/train_cls.txt               the same for VOC2012 seg. train (1,464 ids)
    cls_labels/val_cls.txt                 the same for VOC2012 seg. val (1,449 ids)

An image's classes are the values 1..20 present in its label map (minus 1): the VOC2012
``SegmentationClass/<id>.png`` when it exists, else the SBD ``cls/<id>.mat`` (``GTcls.Segmentation``).
0 (background) and 255 (boundary) are ignored.

Usage::

    python datasets/prepare_voc_train_aug.py --voc-root datasets/VOC2012 --sbd-root datasets/SBD/dataset
"""
import argparse
import os
import sys
import tempfile

import numpy as np

NUM_VOC_CLASSES = 20
EXPECTED_TRAIN_AUG = 10582


def _read_ids(path):
    from bestie_d2.data.datasets import read_id_list

    return read_id_list(path)


def _classes_from_map(arr):
    v = np.unique(np.asarray(arr))
    bad = v[(v > NUM_VOC_CLASSES) & (v != 255)]
    if bad.size:
        raise ValueError(f"label value {int(bad[0])} out of range (0..20, 255)")
    return [int(x) - 1 for x in v if 1 <= x <= NUM_VOC_CLASSES]


def read_sbd_classes(mat_path):
    """Class indices (0..19) present in an SBD ``cls/<id>.mat`` file."""
    import scipy.io

    from bestie_d2.data.errors import AnnotationError, MissingDataError

    if not os.path.exists(mat_path):
        raise MissingDataError("SBD class annotation does not exist", path=mat_path)
    try:
        m = scipy.io.loadmat(mat_path, squeeze_me=True, struct_as_record=False)
        seg = m["GTcls"].Segmentation
        return _classes_from_map(seg)
    except Exception as e:
        raise AnnotationError(f"cannot read GTcls.Segmentation ({type(e).__name__}: {e})", path=mat_path) from None


def read_voc_classes(png_path):
    """Class indices (0..19) present in a VOC ``SegmentationClass/<id>.png``."""
    from bestie_d2.data.datasets import read_label_map
    from bestie_d2.data.errors import AnnotationError

    try:
        return _classes_from_map(read_label_map(png_path))
    except ValueError as e:
        if isinstance(e, AnnotationError):
            raise
        raise AnnotationError(str(e), path=png_path) from None


def _write_atomic(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def build(voc_root, sbd_root, out_root=None, check_images=True):
    """Compute and write the lists; returns ``{"train_aug": n, "train": n, "val": n}``."""
    from bestie_d2.data.errors import MissingDataError

    out_root = out_root or voc_root
    for p in (voc_root, sbd_root):
        if not os.path.isdir(p):
            raise MissingDataError("folder does not exist", path=p)
    voc_train = _read_ids(os.path.join(voc_root, "ImageSets", "Segmentation", "train.txt"))
    voc_val = _read_ids(os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"))
    sbd_train = _read_ids(os.path.join(sbd_root, "train.txt"))
    sbd_val = _read_ids(os.path.join(sbd_root, "val.txt"))
    val_set = set(voc_val)
    train_aug = sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - val_set)

    if check_images:
        missing = [i for i in train_aug + voc_val
                   if not os.path.exists(os.path.join(voc_root, "JPEGImages", i + ".jpg"))]
        if missing:
            raise MissingDataError(
                f"{len(missing)} image(s) are missing, e.g. {missing[0]}.jpg",
                path=os.path.join(voc_root, "JPEGImages"),
            )

    cache = {}

    def labels_of(i):
        if i not in cache:
            png = os.path.join(voc_root, "SegmentationClass", i + ".png")
            if os.path.exists(png):
                cache[i] = read_voc_classes(png)
            else:
                cache[i] = read_sbd_classes(os.path.join(sbd_root, "cls", i + ".mat"))
        return cache[i]

    def lines(ids):
        return [" ".join([i] + [str(c) for c in labels_of(i)]) for i in ids]

    _write_atomic(os.path.join(out_root, "ImageSets", "Segmentation", "train_aug.txt"), train_aug)
    _write_atomic(os.path.join(out_root, "cls_labels", "train_aug_cls.txt"), lines(train_aug))
    _write_atomic(os.path.join(out_root, "cls_labels", "train_cls.txt"), lines(voc_train))
    _write_atomic(os.path.join(out_root, "cls_labels", "val_cls.txt"), lines(voc_val))
    empty = sum(1 for i in train_aug if not labels_of(i))
    if empty:
        print(f"warning: {empty} train_aug image(s) have no object class", file=sys.stderr)
    return {"train_aug": len(train_aug), "train": len(voc_train), "val": len(voc_val)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voc-root", required=True, help="the VOC2012 folder (JPEGImages, SegmentationClass, ImageSets)")
    ap.add_argument("--sbd-root", required=True, help="the SBD 'dataset' folder (cls/, train.txt, val.txt)")
    ap.add_argument("--out-root", default=None, help="where to write (default: --voc-root)")
    ap.add_argument("--no-check-images", action="store_true", help="do not check JPEGImages/<id>.jpg exist")
    ap.add_argument("--strict", action="store_true", help=f"fail unless train_aug has {EXPECTED_TRAIN_AUG} ids")
    args = ap.parse_args(argv)

    try:
        import bestie_d2  # noqa: F401  (prepares detectron2)
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import bestie_d2  # noqa: F401

    counts = build(args.voc_root, args.sbd_root, args.out_root, check_images=not args.no_check_images)
    print(f"train_aug: {counts['train_aug']} ids, VOC train: {counts['train']}, VOC val: {counts['val']}")
    if counts["train_aug"] != EXPECTED_TRAIN_AUG:
        msg = f"train_aug has {counts['train_aug']} ids, the official releases give {EXPECTED_TRAIN_AUG}"
        if args.strict:
            print("error: " + msg, file=sys.stderr)
            return 1
        print("warning: " + msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

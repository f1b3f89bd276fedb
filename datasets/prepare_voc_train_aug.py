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

Without ``--sbd-root`` train_aug is VOC2012 seg. train minus val only (1,464 ids, not 10,582),
with a warning: the paper's VOC results use the full 10,582. An empty train_aug is an error and
nothing is written. Exit status: 0 written, 1 an error (or ``--strict`` and a count != 10,582).

Usage::

    python datasets/prepare_voc_train_aug.py --voc-root datasets/VOC2012 --sbd-root datasets/SBD/dataset
"""
import argparse
import os
import sys

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
    from bestie_d2.utils.io import atomic_write  # the usual 0o666 & ~umask file mode

    atomic_write(path, "".join(line + "\n" for line in lines))


def build(voc_root, sbd_root, out_root=None, check_images=True):
    """Compute and write the lists; returns ``{"train_aug": n, "train": n, "val": n}``.

    ``sbd_root`` None: train_aug = VOC train - val (no SBD images). Raises ``BestieDataError``
    (naming the files) for missing folders/lists and an empty train_aug, before writing anything.
    """
    from bestie_d2.data.errors import ListFileError, MissingDataError

    out_root = out_root or voc_root
    for p in (voc_root, sbd_root):
        if p is not None and not os.path.isdir(p):
            raise MissingDataError("folder does not exist", path=p)
    train_txt = os.path.join(voc_root, "ImageSets", "Segmentation", "train.txt")
    voc_train = _read_ids(train_txt)
    voc_val = _read_ids(os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"))
    sbd_train = _read_ids(os.path.join(sbd_root, "train.txt")) if sbd_root is not None else []
    sbd_val = _read_ids(os.path.join(sbd_root, "val.txt")) if sbd_root is not None else []
    val_set = set(voc_val)
    train_aug = sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - val_set)
    if not train_aug:
        srcs = train_txt + ("" if sbd_root is None else f" and {sbd_root}/{{train,val}}.txt")
        raise ListFileError(
            f"train_aug would be empty: every id of {srcs} is in the val list ({len(val_set)} ids); "
            "check that --voc-root / --sbd-root point at the right folders. Nothing was written",
            path=os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"),
        )

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
            elif sbd_root is None:
                raise MissingDataError("VOC class map does not exist (and no --sbd-root was given)", path=png)
            else:
                cache[i] = read_sbd_classes(os.path.join(sbd_root, "cls", i + ".mat"))
        return cache[i]

    def lines(ids):
        return [" ".join([i] + [str(c) for c in labels_of(i)]) for i in ids]

    # every label is read before the first file is written (an error leaves nothing half-written)
    outputs = [
        (os.path.join(out_root, "ImageSets", "Segmentation", "train_aug.txt"), train_aug),
        (os.path.join(out_root, "cls_labels", "train_aug_cls.txt"), lines(train_aug)),
        (os.path.join(out_root, "cls_labels", "train_cls.txt"), lines(voc_train)),
        (os.path.join(out_root, "cls_labels", "val_cls.txt"), lines(voc_val)),
    ]
    for path, content in outputs:
        _write_atomic(path, content)
    empty = sum(1 for i in train_aug if not labels_of(i))
    if empty:
        print(f"warning: {empty} train_aug image(s) have no object class", file=sys.stderr)
    return {"train_aug": len(train_aug), "train": len(voc_train), "val": len(voc_val)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voc-root", required=True, help="the VOC2012 folder (JPEGImages, SegmentationClass, ImageSets)")
    ap.add_argument("--sbd-root", default=None,
                    help="the SBD 'dataset' folder (cls/, train.txt, val.txt); without it train_aug is "
                         "VOC2012 train only (1,464 ids instead of 10,582), with a warning")
    ap.add_argument("--out-root", default=None, help="where to write (default: --voc-root)")
    ap.add_argument("--no-check-images", action="store_true", help="do not check JPEGImages/<id>.jpg exist")
    ap.add_argument("--strict", action="store_true", help=f"fail unless train_aug has {EXPECTED_TRAIN_AUG} ids")
    args = ap.parse_args(argv)

    try:
        import bestie_d2  # noqa: F401  (prepares detectron2)
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import bestie_d2  # noqa: F401

    from bestie_d2.data.errors import BestieDataError

    try:
        counts = build(args.voc_root, args.sbd_root, args.out_root, check_images=not args.no_check_images)
    except BestieDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"train_aug: {counts['train_aug']} ids, VOC train: {counts['train']}, VOC val: {counts['val']}")
    if counts["train_aug"] != EXPECTED_TRAIN_AUG:
        msg = f"train_aug has {counts['train_aug']} ids, the official releases give {EXPECTED_TRAIN_AUG}"
        if args.sbd_root is None:
            msg += (" (no --sbd-root: VOC2012 train only, without the SBD images; the paper's VOC "
                    "results are trained on the full train_aug)")
        if args.strict:
            print("error: " + msg, file=sys.stderr)
            return 1
        print("warning: " + msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

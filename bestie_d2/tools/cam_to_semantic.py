"""Write semantic maps from a trained PAM classifier's CAMs (a WSSS baseline).

Same CAM inference as :mod:`bestie_d2.tools.extract_cues` (flip-averaged, per-class
max-normalised CAMs of the ground-truth image-label classes at the original resolution). Per pixel:
background (0) when every labelled class's CAM is below ``PAM_CUES.BG_THRESHOLD``, otherwise the
argmax class ``c`` written as ``c + 1``. One uint8 ``<output>/<image_id>.png`` per image, written
atomically; resumable (existing files are skipped unless ``--force``); ``--num-gpus N`` shards
the images by rank.

Usage::

    python -m bestie_d2.tools.cam_to_semantic --config-file configs/VOC/pam_vgg16.yaml \\
        --dataset voc_2012_train_aug --output datasets/VOC2012/WSSS_maps \\
        MODEL.WEIGHTS output/pam_vgg16/model_final.pth

To get cues and maps in one pass use ``extract_cues ... --output CUES --sem-output MAPS``.

Using a stronger WSSS method instead: write its predictions as single-channel PNGs
``<image_id>.png`` (original size; 0 = background, ``c + 1`` = class c, 255 = ignore) into a
folder and set ``BESTIE.DATA.WSSS_DIR`` to that folder.
"""
from bestie_d2.tools.extract_cues import build_parser, invoke_main, main  # noqa: F401

__all__ = ["main", "build_parser", "invoke_main", "cli"]


def cli(argv=None) -> int:
    """Console script ``bestie-cam-to-semantic``: parse ``argv`` (default ``sys.argv[1:]``), run, exit 0."""
    invoke_main(argv, mode="semantic")
    return 0


if __name__ == "__main__":
    invoke_main(mode="semantic")

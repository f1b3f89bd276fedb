#!/usr/bin/env python
from setuptools import find_packages, setup

setup(
    name="bestie_d2",
    version="0.1.0",
    description="BESTIE weakly-supervised instance segmentation (CVPR 2022) for Detectron2",
    packages=find_packages(exclude=("tests*", "benchmarks*")),
    python_requires=">=3.9",
    install_requires=[
        # torch / torchvision / detectron2 are installed by scripts/install.sh (see README)
        "numpy",
        "opencv-python-headless",
        "pycocotools>=2.0.2",
        "scipy",
        "tqdm",
    ],
    extras_require={"test": ["pytest", "pytest-timeout", "timm"]},
    entry_points={
        "console_scripts": [
            # each target is a no-argument function returning the exit status (0); see tests/test_cli.py
            "bestie-extract-cues=bestie_d2.tools.extract_cues:cli",
            "bestie-cam-to-semantic=bestie_d2.tools.cam_to_semantic:cli",
            "bestie-export-pseudo-coco=bestie_d2.tools.export_pseudo_coco:cli",
            "bestie-predict=bestie_d2.tools.predict:cli",
            "bestie-visualize=bestie_d2.tools.visualize:cli",
            "bestie-prepare-points=bestie_d2.tools.prepare_points:cli",
            "bestie-check-data=bestie_d2.tools.check_data:cli",
            "bestie-convert-weights=bestie_d2.tools.convert_weights:cli",
            "bestie-pipeline=bestie_d2.tools.pipeline:cli",
        ]
    },
)

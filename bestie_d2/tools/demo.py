"""The demo: ``bestie-pipeline --preset toy``, the whole pipeline on the embedded toy set, CPU, minutes.

    python -m bestie_d2.tools.demo                       # image-label route (make demo)
    python -m bestie_d2.tools.demo --supervision point   # point route (make demo-point)
    python -m bestie_d2.tools.demo --seed 2 --refiner pointrend --force-from bestie

Every ``bestie-pipeline`` flag works here (``--help``); the defaults are the toy preset's: the toy
configs (configs/toy/), results under output/demo/<supervision>/, seed 1.
"""
import sys

from .pipeline import main as pipeline_main

__all__ = ["main"]


def main(argv=None) -> dict:
    """``bestie-pipeline`` with the toy preset as the default; returns the results dict."""
    return pipeline_main(sys.argv[1:] if argv is None else argv, preset="toy")


if __name__ == "__main__":
    main()

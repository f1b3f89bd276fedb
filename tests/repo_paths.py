"""Paths of the repository the tests run from (one definition for every test module).

``REPO``: the repository root (the folder holding ``setup.py``, ``configs/``, ``tests/``);
``CONFIG_DIR``: ``REPO/configs``; ``TEST_DATA``: ``REPO/tests/data``.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
TEST_DATA = os.path.join(REPO, "tests", "data")


def repo_path(*parts):
    """``os.path.join(REPO, *parts)``: a file of the repository by its relative path."""
    return os.path.join(REPO, *parts)

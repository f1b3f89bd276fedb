"""Command-line plumbing shared by the config-driven tools (``visualize``, ``check_data``, ``predict``).

Like :func:`detectron2.engine.default_argument_parser`, a tool's parser has ``--config-file FILE``
and trailing ``KEY VALUE`` config overrides (``opts``); the tool adds its own flags to the parser
that :func:`tool_argument_parser` returns. Unlike Detectron2's, the overrides may follow a
multi-value flag (``--index 3 17 MODEL.WEIGHTS w.pth``): :func:`parse_args_with_opts` splits the
command line at the first config key (:func:`split_config_opts`) before argparse sees it.
"""
import argparse
import os
import re
import sys
from typing import List, Sequence, Tuple

from ..config import load_config

__all__ = ["tool_argument_parser", "split_config_opts", "parse_args_with_opts", "setup_cfg", "parse_and_load_config"]

#: A config key such as ``MODEL.WEIGHTS`` or ``BESTIE.DATA.WSSS_DIR`` (upper case, dotted).
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")

#: Flags whose value may look like a config key (``--output OUT.DIR``): never a split point.
PATH_FLAGS = ("--config-file", "--output", "--dataset")


def tool_argument_parser(description: str, config_help: str = "BESTIE config") -> argparse.ArgumentParser:
    """An ``argparse`` parser with ``--config-file FILE`` (required) and the ``opts`` overrides;
    defaults are shown in ``--help``. Add the tool's own flags to it."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help=config_help)
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def split_config_opts(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split ``argv`` at the first config key (:data:`CONFIG_KEY`) that is not the value of one of
    :data:`PATH_FLAGS`, so that ``KEY VALUE`` overrides may follow a multi-value flag. Returns
    ``(head, opts)``."""
    argv = list(argv)
    for i, tok in enumerate(argv):
        if CONFIG_KEY.match(tok) and not (i > 0 and argv[i - 1] in PATH_FLAGS):
            return argv[:i], argv[i:]
    return argv, []


def parse_args_with_opts(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args`` after :func:`split_config_opts` (``argv`` None = ``sys.argv[1:]``);
    the overrides end up in ``args.opts``."""
    head, tail = split_config_opts(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(head)
    args.opts = list(getattr(args, "opts", []) or []) + tail
    return args


def setup_cfg(config_file: str, opts: Sequence[str] = ()):
    """:func:`~bestie_d2.config.load_config` (get_cfg → add_bestie_config → ``config_file`` →
    ``opts``; CPU when CUDA is missing; frozen), with a ``--config-file`` error message."""
    if not config_file or not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist")
    return load_config(config_file, opts)


def parse_and_load_config(parser: argparse.ArgumentParser, argv, tool: str, **logger_kwargs):
    """A tool's first steps: :func:`parse_args_with_opts`, Detectron2's ``setup_logger`` for
    ``bestie_d2`` (``logger_kwargs`` passed on), :func:`setup_cfg`; a config that does not load
    exits with status 2 and ``<tool>: error: <reason>``. Returns ``(args, cfg)``."""
    from detectron2.utils.logger import setup_logger

    args = parse_args_with_opts(parser, argv)
    setup_logger(name="bestie_d2", **logger_kwargs)
    try:
        cfg = setup_cfg(args.config_file, args.opts)
    except (FileNotFoundError, KeyError, ValueError) as e:
        parser.exit(2, f"{tool}: error: {e}\n")
    return args, cfg

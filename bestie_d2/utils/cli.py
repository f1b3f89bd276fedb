"""Command-line plumbing shared by the config-driven tools.

Like :func:`detectron2.engine.default_argument_parser`, a tool's parser has ``--config-file FILE``
and trailing ``KEY VALUE`` config overrides (``opts``); the tool adds its own flags to the parser
that :func:`tool_argument_parser` (one process: ``visualize``, ``check_data``, ``predict``) or
:func:`launcher_argument_parser` (several processes through ``launch``: ``extract_cues``,
``cam_to_semantic``, ``export_pseudo_coco``; Detectron2's process flags without its training-only
``--resume`` / ``--eval-only``) returns. Unlike Detectron2's, the overrides may follow a
multi-value flag (``--index 3 17 MODEL.WEIGHTS w.pth``): :func:`parse_args_with_opts` splits the
command line at the first config key (:func:`split_config_opts`) before argparse sees it.

User errors end a tool with one line, ``<tool>: error: <reason>``, not a traceback:
:func:`load_config_or_exit` (a config that does not load, an unknown key with its nearest keys, an
option among the overrides: exit 2) and :func:`exit_on_user_error` (bad data: exit 1).
"""
import argparse
import os
import re
import sys
from typing import Callable, List, Sequence, Tuple

from ..config import ConfigKeyError, load_config
from ..data.errors import BestieDataError

__all__ = [
    "DefaultsHelpFormatter", "tool_argument_parser", "launcher_argument_parser", "split_config_opts", "parse_args_with_opts",
    "setup_cfg", "parse_and_load_config", "load_config_or_exit", "exit_on_user_error",
]

#: A config key such as ``MODEL.WEIGHTS`` or ``BESTIE.DATA.WSSS_DIR`` (upper case, dotted).
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")

#: Flags whose value may look like a config key (``--output OUT.DIR``): never a split point.
PATH_FLAGS = ("--config-file", "--output", "--dataset")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows an option's default once: ``(default: X)`` is added unless the help text
    already says what the default is, or there is none to show (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default is None
                or action.default is False or action.default is argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def tool_argument_parser(description: str, config_help: str = "BESTIE config") -> argparse.ArgumentParser:
    """An ``argparse`` parser with ``--config-file FILE`` (required) and the ``opts`` overrides;
    defaults are shown in ``--help`` (:class:`DefaultsHelpFormatter`). Add the tool's own flags to it."""
    p = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help=config_help)
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


class _RawDescriptionDefaults(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """:class:`DefaultsHelpFormatter` that keeps the description's / epilog's line breaks."""


def launcher_argument_parser(description: str, epilog=None) -> argparse.ArgumentParser:
    """A parser for a tool that runs in several processes (``launch``): ``--config-file FILE``
    (required), Detectron2's process flags ``--num-gpus`` (CPU processes with gloo when there is
    no GPU), ``--num-machines``, ``--machine-rank``, ``--dist-url`` (default ``auto``: a free local
    port) and the ``opts`` overrides; not ``--resume`` / ``--eval-only``, which only training has."""
    p = argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=_RawDescriptionDefaults)
    p.add_argument("--config-file", required=True, metavar="FILE", help="path to the config file")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs, or CPU processes without CUDA)")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    p.add_argument("--dist-url", default="auto", help="initialization URL for multi-process runs (auto: a free local port)")
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


def load_config_or_exit(parser: argparse.ArgumentParser, tool: str, config_file: str, opts: Sequence[str] = ()):
    """:func:`setup_cfg`; a config that does not load (missing file, unknown key — named with the
    nearest existing keys —, an option among the overrides, a value of the wrong type) exits with
    status 2 and one line, ``<tool>: error: <reason>``. Returns the frozen config."""
    try:
        return setup_cfg(config_file, opts)
    except (FileNotFoundError, KeyError, ValueError, AssertionError) as e:  # AssertionError: yacs' own checks
        msg = str(e) if isinstance(e, ConfigKeyError) or not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
        parser.exit(2, f"{tool}: error: {msg}\n")


def exit_on_user_error(tool: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``; a data error (``BestieDataError``: a file named with its problem) or
    a config key error ends the process with one line ``<tool>: error: <reason>`` on stderr and
    exit status 1 (2 for the config) instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except ConfigKeyError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except BestieDataError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def parse_and_load_config(parser: argparse.ArgumentParser, argv, tool: str, **logger_kwargs):
    """A tool's first steps: :func:`parse_args_with_opts`, Detectron2's ``setup_logger`` for
    ``bestie_d2`` (``logger_kwargs`` passed on), :func:`load_config_or_exit`. Returns ``(args, cfg)``."""
    from detectron2.utils.logger import setup_logger

    args = parse_args_with_opts(parser, argv)
    setup_logger(name="bestie_d2", **logger_kwargs)
    return args, load_config_or_exit(parser, tool, args.config_file, args.opts)

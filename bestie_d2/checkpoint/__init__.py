"""Weight conversion: published checkpoints and ImageNet weights -> files ``MODEL.WEIGHTS`` loads.

One module per job: :mod:`.core` (result record, reading, writing, checking), :mod:`.hrnet`,
:mod:`.resnet`, :mod:`.vgg` (the name maps), :mod:`.sources` (the sources by name). The command
line is ``python -m bestie_d2.tools.convert_weights`` (console script ``bestie-convert-weights``).

    from bestie_d2.checkpoint import convert, load_state_dict_file, save_conversion
    conv = convert("timm-hrnet", load_state_dict_file("hrnet_w48.pth"))
    print(conv.summary())
    save_conversion(conv, "hrnet_w48_bestie.pth")     # then MODEL.WEIGHTS hrnet_w48_bestie.pth
"""
from .core import (
    Conversion,
    ConversionError,
    CoverageReport,
    UnknownKeysError,
    check_against_model,
    check_against_state_dict,
    load_state_dict_file,
    save_conversion,
    unwrap_state_dict,
)
from .sources import SOURCES, convert, default_target

__all__ = [
    "Conversion",
    "ConversionError",
    "CoverageReport",
    "UnknownKeysError",
    "SOURCES",
    "check_against_model",
    "check_against_state_dict",
    "convert",
    "default_target",
    "load_state_dict_file",
    "save_conversion",
    "unwrap_state_dict",
]

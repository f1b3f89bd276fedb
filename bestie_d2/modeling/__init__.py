"""Models: importing this package registers BESTIE, PAMClassifier and the HRNet / VGG backbones."""
from .._imports import import_registering_modules

import_registering_modules(__name__, ["backbone", "bestie", "pam"])

"""Models: importing this package registers BESTIE, PAMClassifier and the HRNet / VGG backbones."""
from . import backbone, bestie, pam  # noqa: F401  (registration happens on import)

"""The detector network, and nothing else: `DetectorConfig` (with its YAML dialects), the ResNet C4
backbone, the RPN, the ROI heads and `VGDetector`, which wires them and hands per-proposal outputs to a
selection rule. It imports only the shared leaves of extract (images, preprocessing, boxes, options,
selection); loading weights lives above it, in extract.checkpoints.
"""

from .config import ConfigError, DetectorConfig
from .detector import VGDetector

__all__ = ["ConfigError", "DetectorConfig", "VGDetector"]

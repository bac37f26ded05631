"""What to match besides the logits: feature and attention matches, losses, capture, adapters."""

from keras_distill.matching import feature_losses
from keras_distill.matching.adapters import FeatureAdapter
from keras_distill.matching.capture import LayerCapture
from keras_distill.matching.matches import AttentionMatch
from keras_distill.matching.matches import FeatureMatch

__all__ = ["AttentionMatch", "FeatureAdapter", "FeatureMatch", "LayerCapture", "feature_losses"]

"""Channel pruning: a model with whole filters and units removed, and its recovery."""

from keras_distill.compression.channels.pruning import prune_channels

__all__ = ["prune_channels"]

"""Channel pruning: a model with whole filters and units removed, and its recovery."""

from keras_distill.compression.channels.pruning import prune_channels
from keras_distill.compression.channels.recovery import channel_matches
from keras_distill.compression.channels.recovery import recover_channels

__all__ = ["channel_matches", "prune_channels", "recover_channels"]

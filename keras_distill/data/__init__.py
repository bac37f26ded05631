"""Data for distillation: augmentation, teacher-labelled transfer sets, offline datasets, text."""

from keras_distill.data import augment
from keras_distill.data import datasets
from keras_distill.data import text
from keras_distill.data import transfer

__all__ = ["augment", "datasets", "text", "transfer"]

"""Where the teacher's outputs come from: a live model or a cache of its logits."""

from keras_distill.teachers.cache import TeacherCache
from keras_distill.teachers.sharded_cache import ShardedTeacherCache

__all__ = ["ShardedTeacherCache", "TeacherCache"]

"""The safe path in one call: `distill()` runs the measured recipe, never below the student alone.

`distill(teacher, student, x, y)` trains the student alone and plain KD with
early stopping, distils copies of the student on a teacher-labelled transfer
set for a few `(alpha, temperature)` candidates, keeps the best on
validation, trains that choice again on all labelled examples, and returns
it with a `RecipeReport` that says what was tried and why.
"""

from keras_distill.recipe.pipeline import distill
from keras_distill.recipe.report import RecipeReport
from keras_distill.recipe.stopping import BestOnValidation

__all__ = ["BestOnValidation", "RecipeReport", "distill"]

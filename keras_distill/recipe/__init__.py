"""The safe path in one call: `distill()` runs the measured recipe, never below the student alone.

`distill(teacher, student, x, y)` trains the student alone with early
stopping, distils copies of it on a teacher-labelled transfer set for a few
`(alpha, temperature)` candidates, and returns the better student on
validation with a `RecipeReport` that says what was tried and why.
"""

from keras_distill.recipe.pipeline import distill
from keras_distill.recipe.report import RecipeReport
from keras_distill.recipe.stopping import BestOnValidation

__all__ = ["BestOnValidation", "RecipeReport", "distill"]

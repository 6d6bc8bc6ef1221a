"""The validation gate for the GitOps tree (see gate.py): builds, schema checks, problems mapped to files."""

from deployments.validation.change_safety import change_safety_check
from deployments.validation.gate import tree_validate, tree_validate_or_raise
from deployments.validation.problems import TreeValidationError, ValidationProblem

__all__ = ["TreeValidationError", "ValidationProblem", "change_safety_check", "tree_validate",
           "tree_validate_or_raise"]

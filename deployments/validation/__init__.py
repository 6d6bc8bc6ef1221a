"""The validation gate for the GitOps tree (see gate.py): builds, schema checks, problems mapped to files."""

from deployments.validation.gate import tree_validate, tree_validate_or_raise
from deployments.validation.problems import TreeValidationError, ValidationProblem

__all__ = ["TreeValidationError", "ValidationProblem", "tree_validate", "tree_validate_or_raise"]

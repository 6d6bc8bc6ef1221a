"""Object rules (django-rules): ``user.has_perm(perm, obj)`` for every environment-scoped permission.

An object's environment(s) come from ``deployments.access.environment_ids_of`` (a container: its project's; a
render run or a change request: all of theirs, or every environment); the answer is ``deployments.access.allowed``,
i.e. the role permission plus a grant for each of those environments (governance.backends).
"""

from __future__ import annotations

import rules

from deployments import access
from governance.roles import SCOPED_PERMISSIONS


def _object_rule(perm: str):
    @rules.predicate(name=f"{perm} in a granted environment")
    def check(user, obj=None) -> bool:
        if obj is None:
            return False  # permissions without an object are Django's ModelBackend's answer (the role)
        return access.allowed(user, perm, access.environment_ids_of(obj))

    return check


for _perm in SCOPED_PERMISSIONS:
    rules.add_perm(_perm, _object_rule(_perm))

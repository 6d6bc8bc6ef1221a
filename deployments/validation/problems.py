"""What the validation gate reports: one problem per finding, and the exception that carries them."""

from dataclasses import dataclass

# How many problems the exception's text lists before it only counts the rest.
SUMMARY_LINES = 20


@dataclass(frozen=True)
class ValidationProblem:
    """One finding. ``file`` is repository-relative (best effort: the root's kustomization file when a build fails);
    ``rule`` is a short id such as ``kustomize-build``, ``kubernetes-schema``, ``crd-schema``, ``crd-version``,
    ``unknown-kind``, ``yaml``, ``ingress-host-duplicate`` or a change-safety rule (``immutable-field``,
    ``pvc-shrink``, ``pvc-expansion-not-allowed``, ``service-type-change``); ``message`` names the object (kind,
    namespace/name) and the field's JSON path."""

    file: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: [{self.rule}] {self.message}"


class TreeValidationError(Exception):
    """The tree must not be committed; ``problems`` says why."""

    def __init__(self, problems: list[ValidationProblem]) -> None:
        self.problems = list(problems)
        super().__init__(self._summary())

    def _summary(self) -> str:
        count = len(self.problems)
        lines = [f"{count} validation problem{'' if count == 1 else 's'} in the GitOps tree:"]
        lines += [f"  {problem}" for problem in self.problems[:SUMMARY_LINES]]
        if count > SUMMARY_LINES:
            lines.append(f"  … and {count - SUMMARY_LINES} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._summary()

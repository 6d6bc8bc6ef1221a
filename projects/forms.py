from django.core.exceptions import ValidationError

from deployments import names
from deployments.forms import EmptyFormOnceInlineFormSet
from projects.models import Container, environment_host_conflicts


class ContainerInlineFormSet(EmptyFormOnceInlineFormSet):
    """Checks what one container cannot check alone: host labels unique in the environment and DNS-sized.

    The rules are the model layer's (``deployments.names.container_names`` and
    ``projects.models.environment_host_conflicts``), applied to the containers as the formset will save them: a
    project's slug and its containers can change in one submission, before any row is saved."""

    def clean(self):
        super().clean()
        project = self.instance
        if any(self.errors) or not project.environment_id or not project.slug:
            return
        seen: set[str] = set()
        directories = []
        errors = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            directory = form.cleaned_data.get("directory")
            if not directory:
                continue
            if directory in seen:
                errors.append(f"Two containers use the directory {directory}.")
            seen.add(directory)
            directories.append(directory)
            role = form.cleaned_data.get("role") or Container.Role.FRONTEND
            errors += names.derived_name_errors(names.container_names(
                slug=project.slug, directory=directory, app_domain=project.environment.app_domain,
                service=role in Container.SERVICE_ROLES))
        if not errors and project.state != project.State.DELETED:
            errors += environment_host_conflicts(environment=project.environment, slug=project.slug,
                                                 directories=directories, project_id=project.pk)
        if errors:
            raise ValidationError(errors)

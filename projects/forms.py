from django import forms
from django.core.exceptions import ValidationError

from projects.models import DNS_LABEL_MAX
from projects.selectors import environment_host_labels


class ContainerInlineFormSet(forms.BaseInlineFormSet):
    """Checks what one container cannot check alone: host labels unique in the environment and DNS-sized."""

    def clean(self):
        super().clean()
        project = self.instance
        if any(self.errors) or not project.environment_id or not project.slug:
            return
        taken = environment_host_labels(environment_id=project.environment_id, exclude_project_id=project.pk)
        seen: set[str] = set()
        errors = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            directory = form.cleaned_data.get("directory")
            if not directory:
                continue
            label = f"{project.slug}-{directory}"
            if directory in seen:
                errors.append(f"Two containers use the directory {directory}.")
            seen.add(directory)
            if len(label) > DNS_LABEL_MAX:
                errors.append(f"Host {label} is {len(label)} characters long; a DNS label has at most 63.")
            elif label in taken:
                errors.append(
                    f"Host {label}.{project.environment.app_domain} is already used by project {taken[label]} "
                    "in this environment. Choose another slug or directory."
                )
            elif len(f"{label}.{project.environment.app_domain}") > 253:
                errors.append(f"Host {label}.{project.environment.app_domain} is longer than 253 characters.")
        if errors:
            raise ValidationError(errors)

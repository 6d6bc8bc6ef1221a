from django import forms
from django.core.exceptions import ValidationError

from deployments import services
from deployments.models import Environment, Secret


class SecretForm(forms.ModelForm):
    """Write-only: takes a value (or generates one) and never renders the stored value back."""

    value = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the current value.",
    )
    generate = forms.BooleanField(required=False, label="Generate a random value",
                                  help_text="Replaces the value with 48 random bytes (URL-safe).")

    class Meta:
        model = Secret
        fields = ["secret_name", "key", "description"]

    def clean(self):
        cleaned = super().clean()
        value, generate = cleaned.get("value") or "", cleaned.get("generate")
        if value and generate:
            raise ValidationError({"generate": "Either type a value or generate one, not both."})
        if value:
            if not value.strip():
                self.add_error("value", "The value is only whitespace.")
            elif len(value.encode()) > services.SECRET_VALUE_MAX_BYTES:
                self.add_error("value", f"The value is larger than {services.SECRET_VALUE_MAX_BYTES // 1024} KiB, "
                                        "the most a Kubernetes Secret key should hold here.")
        elif not generate and not (self.instance.pk and self.instance.ciphertext) and self.has_changed():
            self.add_error("value", "A new secret needs a value: type one or tick 'Generate a random value'.")
        return cleaned

    def new_value(self) -> str | None:
        """The value to store, or None to keep the current one."""
        if not hasattr(self, "cleaned_data"):
            return None
        if self.cleaned_data.get("generate"):
            return services.secret_generate_value()
        return self.cleaned_data.get("value") or None


class EnvironmentForm(forms.ModelForm):
    """The environment's admin form; checks that need more than one field live in Environment.clean()."""

    class Meta:
        model = Environment
        fields = "__all__"

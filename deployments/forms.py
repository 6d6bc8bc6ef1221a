from django import forms
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from deployments import services
from deployments.models import Environment, Secret
from deployments.secrets import crypto, sealing


class SecretForm(forms.ModelForm):
    """Write-only: takes a value (or generates one) and never renders the stored value back.

    The value field is a password input that never re-renders what was typed, not even when the form comes
    back with an error; the admin shows only the fingerprint, version and last rotation of a stored value.
    """

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

    @sensitive_variables("value", "cleaned")
    def clean(self):
        cleaned = super().clean()
        value, generate = cleaned.get("value") or "", cleaned.get("generate")
        if value and generate:
            self.add_error("generate", "Either type a value or generate one, not both.")
        elif value:
            try:
                services.secret_value_validate(value)
            except ValidationError as exc:
                self.add_error("value", exc)
        elif not generate and not (self.instance.pk and self.instance.ciphertext) and self.has_changed():
            self.add_error("value", "A new secret needs a value: type one or tick 'Generate a random value'.")
        elif not generate and self.instance.pk and self.has_changed() and \
                not crypto.is_readable(self.instance.ciphertext):
            self.add_error("value", "The stored value is unreadable (no key in PORTAL_ENCRYPTION_KEYS opens it): "
                                    "re-enter the value, or tick 'Generate a random value'.")
        if (value or generate) and not self.errors:
            # Problems the service would raise while saving (a server error by then) become form errors here.
            try:
                crypto.keys_check()
            except crypto.EncryptionKeyError as exc:
                self.add_error(None, f"The portal cannot encrypt values: {exc}")
            environment = cleaned.get("environment") or self._environment()
            if environment is not None:
                try:
                    sealing.environment_sealing_certificate(environment)
                except ValidationError as exc:
                    self.add_error(None, exc)
        return cleaned

    def _environment(self) -> Environment | None:
        try:
            return self.instance.environment  # set by the inline formset on the environment page
        except Environment.DoesNotExist:
            return None

    def new_value(self) -> crypto.SecretValue | None:
        """The value to store, or None to keep the current one (a SecretValue: its repr hides it)."""
        if not hasattr(self, "cleaned_data"):
            return None
        if self.cleaned_data.get("generate"):
            return services.secret_generate_value()
        value = self.cleaned_data.get("value")
        return crypto.SecretValue(value) if value else None


class EnvironmentForm(forms.ModelForm):
    """The environment's admin form; checks that need more than one field live in Environment.clean()."""

    class Meta:
        model = Environment
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A PEM block keeps its bytes: stripping the trailing newline would make every save look like a change.
        if "sealed_secrets_certificate" in self.fields:
            self.fields["sealed_secrets_certificate"].strip = False


class EnvironmentMoveForm(forms.Form):
    """Rename an environment and/or switch its GitOps tool; the current name, typed again, confirms."""

    name = forms.CharField(max_length=63, help_text="New name (a DNS-1123 label).")
    gitops_tool = forms.ChoiceField(choices=Environment.GitOpsTool.choices, label="GitOps tool")
    confirm = forms.CharField(max_length=63, label="Type the current name to confirm")

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.forms.utils import flatatt
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_variables

from deployments import services
from deployments.models import Environment, Secret
from deployments.secrets import crypto, sealing

FILE_SUFFIX = "_file"


class WriteOnlyValueWidget(forms.Widget):
    """A multi-line text area plus a file input for one value; renders neither a stored nor a submitted value.

    A single-line password input drops the line breaks of a pasted PEM key or JSON document; a text area keeps them
    (browsers send its line breaks as CRLF, as the HTML standard says), and a file upload (``<name>_file``) keeps the
    file's bytes exactly. The text area is always rendered empty, also when the form comes back with an error."""

    needs_multipart_form = True

    def __init__(self, attrs=None) -> None:
        super().__init__({"rows": 6, "cols": 80, "autocomplete": "off", "spellcheck": "false",
                          "class": "vLargeTextField", **(attrs or {})})

    def render(self, name, value, attrs=None, renderer=None):
        final = self.build_attrs(self.attrs, attrs)
        final["name"] = name
        element_id = final.get("id") or f"id_{name}"
        return format_html(
            '<textarea{}></textarea><div><label for="{}">or upload a file (its bytes are kept exactly): </label>'
            '<input type="file" name="{}" id="{}"></div>',
            flatatt(final), element_id + FILE_SUFFIX, name + FILE_SUFFIX, element_id + FILE_SUFFIX)

    def value_from_datadict(self, data, files, name):
        upload = files.get(name + FILE_SUFFIX) if files else None
        return upload if upload else data.get(name)

    def value_omitted_from_data(self, data, files, name):
        return name not in data and not (files and name + FILE_SUFFIX in files)


class SecretValueField(forms.CharField):
    """The value as text, exactly as submitted (no strip, no newline conversion), or an uploaded UTF-8 file."""

    def __init__(self, **kwargs) -> None:
        super().__init__(strip=False, widget=WriteOnlyValueWidget(), **kwargs)

    @sensitive_variables("data")
    def to_python(self, value):
        if isinstance(value, UploadedFile):
            if value.size is not None and value.size > services.SECRET_VALUE_MAX_BYTES:
                raise ValidationError(
                    "The file is %(size)s bytes, larger than %(max)s KiB, the most a Kubernetes Secret key should "
                    "hold here.", params={"size": value.size, "max": services.SECRET_VALUE_MAX_BYTES // 1024},
                    code="secret_value_too_large")
            data = value.read()
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError("The file is not UTF-8 text; the portal stores text values (encode binary "
                                      "data as base64 first).", code="secret_value_encoding") from None
        return super().to_python(value)


class SecretForm(forms.ModelForm):
    """Write-only: takes a value (or generates one) and never renders the stored value back.

    The value field is a multi-line text area (or a file upload) that never re-renders what was typed, not even
    when the form comes back with an error; the admin shows only the fingerprint, version and last rotation of a
    stored value. The value is stored byte for byte as submitted: line breaks and trailing newlines included.
    """

    value = SecretValueField(
        required=False,
        help_text="Write-only. Multi-line values (PEM keys, JSON) keep their line breaks; a text area sends them as "
                  "CRLF, so upload a file to keep LF line endings exactly. Leave empty to keep the current value.",
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


class EmptyFormOnceInlineFormSet(forms.BaseInlineFormSet):
    """An inline formset whose ``empty_form`` (the hidden row the admin copies for "Add another") is built once.

    Django's BaseFormSet.empty_form is a property that builds a new form on every read, and the admin's inline
    helpers read it several times per inline per page (the rows, the column headers, the media, the JavaScript
    data): six forms built for one shown. The form does not change while a request renders it."""

    @cached_property
    def empty_form(self):
        return super().empty_form


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

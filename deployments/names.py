"""Names the rendered tree derives from the portal's inputs, and the limits those names must keep.

Pure functions (no models, no I/O), one per derived name, spelled the way deployments/rendering builds them. The
model ``clean()`` methods check the derived names of their inputs with ``derived_name_errors``, so an input that
is valid on its own but makes a derived name too long gets a field error naming the derived name and its limit.

Limits and where they come from:

- DNS-1123 label, 63: Namespace names (``proj-<uuid>``), the host label ``<slug>-<dir>`` of an Ingress host.
- DNS-1035 label, 63: Service names (``dev-<dir>``, ``svc-<dir>``; Kubernetes ``IsDNS1035Label``).
- DNS-1123 subdomain, 253: most object names (PVCs ``svc-<dir>-data``, Secrets ``dev-<dir>-tls``, Ingress
  ``spec.rules[].host``, VolumeSnapshot and VolumeSnapshotContent names).
- Label value, 63: a Flux Kustomization's name becomes the label ``kustomize.toolkit.fluxcd.io/name`` on every
  object it applies; an Argo CD Application's name becomes the tracking label ``app.kubernetes.io/instance``
  (label tracking, Argo CD's default before 3.0) on every object it applies.
- IAM role name, 64 (AWS IAM ``CreateRole``).
- AWS Secrets Manager secret name, 512 (``CreateSecret``).
- Image name, 255 (distribution reference grammar ``NameTotalLengthMax``).
"""

import uuid
from dataclasses import dataclass

DNS1123_LABEL_MAX = 63
DNS1035_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
IAM_ROLE_NAME_MAX = 64
SECRETS_MANAGER_NAME_MAX = 512
IMAGE_NAME_MAX = 255

IMAGE_NAMES = ("tesslate-backend", "tesslate-devserver", "tesslate-frontend")
FLUX_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
ARGOCD_TRACKING_LABEL = "app.kubernetes.io/instance"


@dataclass(frozen=True)
class DerivedName:
    """A name built from an input: ``what`` it is, its ``value``, its ``limit`` in characters, ``why`` the limit
    holds, and the length of the ``input_value`` it was built from (to say how long the input may be)."""

    what: str
    value: str
    limit: int
    why: str
    input_length: int

    @property
    def too_long(self) -> bool:
        return len(self.value) > self.limit

    @property
    def input_max(self) -> int:
        """The longest input that keeps this name within its limit."""
        return self.limit - (len(self.value) - self.input_length)

    def message(self) -> str:
        return (f"The {self.what} {self.value} would be {len(self.value)} characters; {self.why} has at most "
                f"{self.limit}. Shorten this to at most {max(self.input_max, 0)} characters.")


# --- one function per derived name -------------------------------------------------------------------------------

def project_namespace(project_id: uuid.UUID | str) -> str:
    """``proj-<uuid>`` (41 characters): the project's Namespace (DOMAIN.md)."""
    return f"proj-{project_id}"


def argocd_app_project_name(environment: str) -> str:
    return f"tesslate-{environment}"


def argocd_platform_application_name(environment: str) -> str:
    return f"tesslate-platform-{environment}"


def argocd_projects_application_set_name(environment: str) -> str:
    return f"tesslate-projects-{environment}"


def argocd_project_application_name(environment: str, project_id: uuid.UUID | str) -> str:
    """What the ApplicationSet's template ``<env>-{{ .path.basename }}`` makes of a project folder."""
    return f"{environment}-{project_namespace(project_id)}"


def flux_platform_kustomization_name(environment: str) -> str:
    return f"tesslate-platform-{environment}"


def flux_projects_kustomization_name(environment: str) -> str:
    return f"tesslate-projects-{environment}"


def external_secrets_role_name(environment: str) -> str:
    """The default IRSA role of External Secrets on EKS: ``tesslate-external-secrets-<env>``."""
    return f"tesslate-external-secrets-{environment}"


def secrets_manager_secret_name(environment: str, secret_name: str, key: str) -> str:
    """Where a Secret key's value lives in AWS Secrets Manager: ``tesslate/<env>/<secret>/<KEY>``."""
    return f"tesslate/{environment}/{secret_name}/{key}"


def host_label(slug: str, directory: str) -> str:
    """``<slug>-<dir>``: the one label of a project host under the app domain (DOMAIN.md)."""
    return f"{slug}-{directory}"


def host(slug: str, directory: str, app_domain: str) -> str:
    """``<slug>-<dir>.<app domain>``: a dev container's Ingress host."""
    return f"{host_label(slug, directory)}.{app_domain}"


def workload_name(directory: str, *, service: bool) -> str:
    """``dev-<dir>`` or ``svc-<dir>``: the Deployment and the Service of a container."""
    return f"{'svc' if service else 'dev'}-{directory}"


def service_data_claim_name(directory: str) -> str:
    """``svc-<dir>-data``: a service container's PersistentVolumeClaim."""
    return f"{workload_name(directory, service=True)}-data"


def ingress_tls_secret_name(directory: str) -> str:
    """``dev-<dir>-tls``: the TLS Secret cert-manager writes for a dev container's Ingress (HTTP-01)."""
    return f"{workload_name(directory, service=False)}-tls"


def image_name(registry: str, image: str) -> str:
    return f"{registry}/{image}" if registry else image


# --- the names each input derives --------------------------------------------------------------------------------

def environment_names(*, name: str, gitops_tool: str, external_secrets_role: bool) -> list[DerivedName]:
    """The names an environment's ``name`` derives (``gitops_tool``: "argocd" or "flux"; ``external_secrets_role``:
    the default IAM role name is used, i.e. an EKS environment without its own role ARN)."""
    sample_project = uuid.UUID(int=0)
    n = len(name)
    names = []
    if gitops_tool == "flux":
        why = f"Flux writes it into the label {FLUX_NAME_LABEL} of every object it applies, and a label value"
        names += [
            DerivedName("Flux Kustomization name", flux_platform_kustomization_name(name), LABEL_VALUE_MAX, why, n),
            DerivedName("Flux Kustomization name", flux_projects_kustomization_name(name), LABEL_VALUE_MAX, why, n),
        ]
    else:
        why = (f"Argo CD writes it into the tracking label {ARGOCD_TRACKING_LABEL} of every object it applies, and "
               f"a label value")
        names += [
            DerivedName("Argo CD AppProject name", argocd_app_project_name(name), DNS1123_SUBDOMAIN_MAX,
                        "an object name (DNS-1123 subdomain)", n),
            DerivedName("Argo CD ApplicationSet name", argocd_projects_application_set_name(name),
                        DNS1123_SUBDOMAIN_MAX, "an object name (DNS-1123 subdomain)", n),
            DerivedName("Argo CD Application name", argocd_platform_application_name(name), LABEL_VALUE_MAX, why, n),
            DerivedName("Argo CD Application name of each project",
                        argocd_project_application_name(name, sample_project), LABEL_VALUE_MAX, why, n),
        ]
    if external_secrets_role:
        names.append(DerivedName("IAM role name", external_secrets_role_name(name), IAM_ROLE_NAME_MAX,
                                 "an IAM role name", n))
    return names


def registry_names(registry: str) -> list[DerivedName]:
    """The image names an environment's image registry derives (``<registry>/tesslate-*``)."""
    return [DerivedName("image name", image_name(registry, image), IMAGE_NAME_MAX,
                        "an image name (distribution reference grammar)", len(registry))
            for image in IMAGE_NAMES] if registry else []


def container_names(*, slug: str, directory: str, app_domain: str, service: bool,
                    input_length: int | None = None) -> list[DerivedName]:
    """The names a container derives from its project's slug and its directory (``input_length``: the length of
    the input being checked, the directory's by default)."""
    n = len(directory) if input_length is None else input_length
    workload = workload_name(directory, service=service)
    names = [
        # Every container holds its host label, service containers too (a role change must not move hosts).
        DerivedName("host label", host_label(slug, directory), DNS1123_LABEL_MAX, "a DNS label", n),
        DerivedName("Ingress host", host(slug, directory, app_domain), DNS1123_SUBDOMAIN_MAX,
                    "an Ingress host (DNS-1123 subdomain)", n),
        DerivedName("Service name", workload, DNS1035_LABEL_MAX, "a Service name (DNS-1035 label)", n),
        DerivedName("Deployment name", workload, DNS1123_SUBDOMAIN_MAX, "an object name (DNS-1123 subdomain)", n),
    ]
    if service:
        names.append(DerivedName("PersistentVolumeClaim name", service_data_claim_name(directory),
                                 DNS1123_SUBDOMAIN_MAX, "an object name (DNS-1123 subdomain)", n))
    else:
        names.append(DerivedName("TLS Secret name", ingress_tls_secret_name(directory), DNS1123_SUBDOMAIN_MAX,
                                 "an object name (DNS-1123 subdomain)", n))
    return names


def secret_names(*, environment: str, secret_name: str, key: str, external_secrets: bool) -> list[DerivedName]:
    """The names a portal Secret key derives (the AWS Secrets Manager name on EKS)."""
    if not external_secrets:
        return []
    return [DerivedName("AWS Secrets Manager secret name", secrets_manager_secret_name(environment, secret_name, key),
                        SECRETS_MANAGER_NAME_MAX, "an AWS Secrets Manager secret name", len(secret_name))]


def derived_name_errors(names: list[DerivedName]) -> list[str]:
    """Messages for the derived names that break their limits (empty: all fit)."""
    return [name.message() for name in names if name.too_long]


# --- Kubernetes Secrets that something else writes in the platform namespace -------------------------------------

# Kept equal to deployments.rendering.common (a test compares them; this module must not import the renderer).
WILDCARD_TLS_SECRET = "tesslate-wildcard-tls"
PLATFORM_TLS_SECRET = "tesslate-tls"
PLATFORM_SERVICE_ACCOUNTS = ("default", "tesslate-backend-sa", "tesslate-external-secrets")

RESERVED_SECRET_NAMES = {
    WILDCARD_TLS_SECRET: "cert-manager writes the wildcard certificate into it (TLS mode DNS01)",
    PLATFORM_TLS_SECRET: "cert-manager writes the main Ingress's certificate into it (TLS mode HTTP-01)",
}


def reserved_secret_name_reason(secret_name: str) -> str | None:
    """Why a portal Secret may not use ``secret_name`` in the platform namespace (None: it may).

    Refused: the TLS Secrets cert-manager writes for the rendered Certificate and Ingresses (``tesslate-wildcard-tls``,
    ``tesslate-tls``, ``dev-<dir>-tls``), service-account token Secrets of the platform's ServiceAccounts
    (``<account>-token``, ``<account>-token-<suffix>``, written by the token controller) and Helm's release records
    (``sh.helm.release.v1.*``). A portal Secret under such a name would make its ExternalSecret or SealedSecret fight
    that controller over one Kubernetes Secret."""
    if secret_name in RESERVED_SECRET_NAMES:
        return RESERVED_SECRET_NAMES[secret_name]
    if secret_name.startswith("dev-") and secret_name.endswith("-tls"):
        return "cert-manager writes the TLS Secrets of dev container Ingresses under dev-<dir>-tls"
    for account in PLATFORM_SERVICE_ACCOUNTS:
        token = f"{account}-token"
        if secret_name == token or secret_name.startswith(token + "-"):
            return f"the service-account token controller writes the token of ServiceAccount {account} into it"
    if secret_name.startswith("sh.helm.release."):
        return "Helm keeps its release records in Secrets named sh.helm.release.*"
    return None

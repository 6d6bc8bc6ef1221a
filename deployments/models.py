"""Environments, their node groups and their secrets: what the portal renders into the GitOps repository."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from deployments import domain, names
from deployments import validators as v
from deployments.secrets.age_format import recipient_load
from deployments.secrets.kubeseal import certificate_load
from deployments.validation.canonical import NotCanonicalizable, canonical_quantity
from deployments.validation.change_safety import storage_class_change_problem
from jobs.models import JobRun

MINIKUBE_PROVISIONER = domain.MINIKUBE_PROVISIONER
EBS_PROVISIONER = domain.EBS_PROVISIONER


class Environment(models.Model):
    """One Tesslate Studio installation: a cluster (or a Compose server) and everything shipped to it."""

    class Kind(models.TextChoices):
        MINIKUBE = "minikube", "Minikube (local Kubernetes)"
        EKS = "eks", "AWS EKS"
        COMPOSE = "compose", "Docker Compose (single server)"

    class TLSMode(models.TextChoices):
        NONE = "none", "None (HTTP only)"
        CERT_MANAGER_DNS01 = "cert-manager-dns01", "cert-manager wildcard certificate (Cloudflare DNS01)"
        LETSENCRYPT_HTTP01 = "letsencrypt-http01", "Let's Encrypt HTTP-01"

    class StorageProvisioner(models.TextChoices):
        MINIKUBE_HOSTPATH = "minikube-hostpath", "Minikube hostpath"
        EBS_GP3 = "ebs-gp3", "AWS EBS gp3"

    class GitOpsTool(models.TextChoices):
        ARGOCD = "argocd", "Argo CD"
        FLUX = "flux", "Flux"

    class AcmeChallenge(models.TextChoices):
        HTTP01 = domain.ACME_HTTP01, "HTTP-01 (port 80 reachable from the internet; one certificate per host)"
        DNS01 = domain.ACME_DNS01, "DNS-01 through Cloudflare (one wildcard certificate)"

    class DatastoreMode(models.TextChoices):
        IN_CLUSTER = domain.DATASTORE_IN_CLUSTER, "In cluster (PostgreSQL and Redis StatefulSets)"
        EXTERNAL = domain.DATASTORE_EXTERNAL, "External (RDS / ElastiCache URLs in secrets)"

    name = models.CharField(
        max_length=63, unique=True, validators=[v.validate_dns1123_label],
        help_text="DNS-1123 label, for example aws-production. Names the overlay directory in git.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MINIKUBE)
    app_domain = models.CharField("app domain",
        max_length=253, validators=[v.validate_domain_name],
        help_text="Projects get one-label subdomains of it: {slug}-{dir}.{app domain}.",
    )
    ingress_class = models.CharField(max_length=63, default="nginx", validators=[v.validate_dns1123_subdomain])
    ingress_controller_namespace = models.CharField(
        max_length=63, default="ingress-nginx", validators=[v.validate_dns1123_label],
        help_text="Namespace of the ingress controller pods: the only namespace besides tesslate whose pods may "
                  "open connections to project pods (NetworkPolicy project-isolation).",
    )
    tls_mode = models.CharField("TLS mode", max_length=24, choices=TLSMode.choices, default=TLSMode.NONE)
    acme_email = models.EmailField("ACME email", blank=True,
                                  help_text="Contact address for the ACME account (TLS modes only).")
    cloudflare_api_token_secret = models.CharField("Cloudflare API token secret",
        max_length=253, blank=True, default="cloudflare-api-token", validators=[v.validate_dns1123_subdomain],
        help_text="Kubernetes Secret (key api-token) in the cert-manager namespace that holds the Cloudflare token.",
    )

    storage_class_name = models.CharField("StorageClass name",
        max_length=253, default="tesslate-block-storage", validators=[v.validate_dns1123_subdomain],
    )
    storage_provisioner = models.CharField(
        max_length=24, choices=StorageProvisioner.choices, default=StorageProvisioner.MINIKUBE_HOSTPATH,
    )
    storage_encrypted = models.BooleanField(default=True, help_text="EBS only: encrypt volumes at rest.")
    volume_snapshot_class = models.CharField("VolumeSnapshotClass",
        max_length=253, default="tesslate-ebs-snapshots", validators=[v.validate_dns1123_subdomain],
    )
    hibernation_idle_minutes = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
    )
    snapshot_retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)],
    )
    max_snapshots_per_project = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(100)],
    )

    image_registry = models.CharField(
        max_length=255, blank=True, validators=[v.validate_image_reference],
        help_text="Registry prefix for tesslate-* images, for example 123456789012.dkr.ecr.us-east-1.amazonaws.com. "
                  "Empty: images loaded into the node (Minikube).",
    )
    image_tag = models.CharField(max_length=128, default="latest", validators=[v.validate_image_tag])
    backend_replicas = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(50)])
    backend_cpu_request = models.CharField("backend CPU request", max_length=16, default="500m",
                                           validators=[v.validate_cpu_quantity])
    backend_cpu_limit = models.CharField("backend CPU limit", max_length=16, default="2",
                                         validators=[v.validate_cpu_quantity])
    backend_memory_request = models.CharField(max_length=16, default="1Gi", validators=[v.validate_memory_quantity])
    backend_memory_limit = models.CharField(max_length=16, default="2Gi", validators=[v.validate_memory_quantity])
    backend_readiness_path = models.CharField(
        max_length=255, default="/health", validators=[v.validate_http_path],
        help_text="The backend's readiness check: the guide's /health, or /ready on Studio releases that serve it "
                  "(it also checks the database).",
    )
    datastore_mode = models.CharField(
        max_length=10, choices=DatastoreMode.choices, default=DatastoreMode.IN_CLUSTER,
        help_text="In cluster: StatefulSets postgres and redis read the Secrets postgres-secret (POSTGRES_DB, "
                  "POSTGRES_USER, POSTGRES_PASSWORD) and redis-secret (REDIS_PASSWORD). External: DATABASE_URL and "
                  "REDIS_URL of tesslate-app-secrets point at RDS / ElastiCache. Either way both URLs are secrets.",
    )

    aws_account_id = models.CharField("AWS account ID",
        max_length=12, blank=True,
        help_text="EKS only: the 12-digit AWS account id.",
    )
    aws_region = models.CharField("AWS region", max_length=32, blank=True, help_text="EKS only, for example us-east-1.")
    eks_cluster_name = models.CharField("EKS cluster name", max_length=100, blank=True, help_text="EKS only.")
    kube_context = models.CharField("kubeconfig context",
        max_length=253, blank=True,
        help_text="kubeconfig context the portal reads this cluster through (live view, snapshots). Empty: the "
                  "current context, or the in-cluster configuration when the portal runs inside the cluster.",
    )

    disabled_addons = models.CharField(
        max_length=255, blank=True, validators=[v.validate_addon_names],
        help_text="Cluster add-ons the cluster already runs, so git does not install them (comma-separated): "
                  + ", ".join(v.ADDON_NAMES) + ". Each is installed only where the environment needs it.",
    )

    protected = models.BooleanField(default=False, help_text="Production: changes need a second person's approval.")
    gitops_tool = models.CharField("GitOps tool", max_length=8, choices=GitOpsTool.choices, default=GitOpsTool.ARGOCD)

    sealed_secrets_certificate = models.TextField("Sealed Secrets certificate",
        blank=True,
        help_text="Clusters without AWS: the Sealed Secrets controller's public certificate "
                  "(PEM, `kubeseal --fetch-cert`).",
    )

    secrets_manager_role_arn = models.CharField("Secrets Manager role ARN",
        max_length=2048, blank=True,
        help_text="EKS only: IAM role (IRSA) that External Secrets assumes to read AWS Secrets Manager. "
                  "Empty: arn:aws:iam::{account}:role/tesslate-external-secrets-{environment}.",
    )

    # --- Docker Compose (single server): the guide's Path 1 ---------------------------------------------------------
    server_ip = models.GenericIPAddressField(
        null=True, blank=True, unpack_ipv4=True,
        help_text="Compose only: the server's public IP; the DNS A records studio and *.studio point here.",
    )
    server_ram_gb = models.PositiveIntegerField(
        default=16, validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Compose only: the server's memory in GB (the guide recommends 16). PostgreSQL is tuned from it.",
    )
    server_disk_gb = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(10), MaxValueValidator(65536)],
        help_text="Compose only: the server's disk in GB (the guide asks for 50 or more).",
    )
    server_monthly_price = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("120"), validators=[MinValueValidator(Decimal("0"))],
        help_text="Compose only: what the server costs per month in USD (the guide: about 120).",
    )
    age_recipient = models.CharField(
        max_length=100, blank=True,
        help_text="Compose only: the server's age recipient (age1…, `age-keygen -y /etc/tesslate/age.key`). "
                  "Secret values reach git only encrypted to it.",
    )
    acme_challenge = models.CharField(
        max_length=8, choices=AcmeChallenge.choices, default=AcmeChallenge.HTTP01,
        help_text="Compose with TLS: how Traefik proves the domain to Let's Encrypt. DNS-01 needs the secret "
                  "key CF_DNS_API_TOKEN (a Cloudflare API token).",
    )
    deploy_interval_minutes = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(1440)],
        help_text="Compose only: how often the server fetches this repository and applies a new commit.",
    )
    backup_schedule = models.CharField(
        max_length=64, default="*-*-* 03:00:00", validators=[v.validate_systemd_calendar],
        help_text="Compose only: when the database backup runs (systemd OnCalendar=, server time).",
    )
    backup_retention_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Compose only: local backups older than this are deleted after each backup.",
    )
    backup_s3_bucket = models.CharField(
        max_length=63, blank=True, validators=[v.validate_s3_bucket_name],
        help_text="Compose only, optional: S3 bucket every backup is uploaded to (aws CLI on the server).",
    )
    backup_s3_prefix = models.CharField(
        max_length=200, blank=True, validators=[v.validate_s3_prefix],
        help_text="Key prefix of the uploads. Empty: tesslate-backups/{environment}/.",
    )
    backup_s3_region = models.CharField(max_length=32, blank=True,
                                        help_text="Region of the backup bucket, for example eu-central-1.")

    needs_render = models.BooleanField(default=True, editable=False,
                                       help_text="Changed since the last successful render.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="eks") | ~Q(storage_provisioner="ebs-gp3"),
                name="environment_ebs_only_on_eks",
                violation_error_message="EBS storage needs an EKS environment.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def provisioner(self) -> str:
        return domain.provisioner(self.storage_provisioner)

    @property
    def supports_snapshots(self) -> bool:
        return domain.supports_snapshots(self.kind, self.storage_provisioner)

    @property
    def uses_external_secrets(self) -> bool:
        """EKS reads secrets from AWS Secrets Manager; other clusters get SealedSecrets."""
        return domain.uses_external_secrets(self.kind)

    @property
    def volume_expansion_allowed(self) -> bool:
        """Whether the rendered StorageClass sets allowVolumeExpansion: true (EBS gp3 does, Minikube's hostpath
        class does not; templates/gitops/overlay/storage-class.yaml.j2)."""
        return self.storage_provisioner == self.StorageProvisioner.EBS_GP3

    @property
    def is_compose(self) -> bool:
        return self.kind == self.Kind.COMPOSE

    @property
    def backup_s3_key_prefix(self) -> str:
        """Where backups are uploaded in the bucket, always ending in '/'."""
        prefix = self.backup_s3_prefix.strip("/") or f"tesslate-backups/{self.name}"
        return prefix + "/"

    @property
    def scheme(self) -> str:
        return domain.scheme(self.tls_mode)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.kind == self.Kind.EKS:
            for field in ("aws_account_id", "aws_region", "eks_cluster_name"):
                if not getattr(self, field):
                    errors.setdefault(field, []).append("Required for an EKS environment.")
        for field, validate in (("aws_account_id", v.validate_aws_account_id), ("aws_region", v.validate_aws_region),
                                ("backup_s3_region", v.validate_aws_region),
                                ("eks_cluster_name", v.validate_eks_cluster_name)):
            if getattr(self, field):
                try:
                    validate(getattr(self, field))
                except ValidationError as exc:
                    errors.setdefault(field, []).extend(exc.messages)
        if self.storage_provisioner == self.StorageProvisioner.EBS_GP3 and self.kind != self.Kind.EKS:
            errors.setdefault("storage_provisioner", []).append("EBS gp3 storage needs an EKS environment.")
        if self.kind == self.Kind.MINIKUBE and self.tls_mode != self.TLSMode.NONE:
            errors.setdefault("tls_mode", []).append("Minikube is HTTP only; choose None.")
        if self.tls_mode != self.TLSMode.NONE and not self.acme_email:
            errors.setdefault("acme_email", []).append("The ACME account needs a contact address for TLS.")
        if self.tls_mode == self.TLSMode.CERT_MANAGER_DNS01 and not self.cloudflare_api_token_secret:
            errors.setdefault("cloudflare_api_token_secret", []).append(
                "DNS01 with Cloudflare needs the token's Secret.")
        canonicalize_quantities(self, QUANTITY_FIELDS)
        if self.kind == self.Kind.COMPOSE:
            self._clean_compose(errors)
        for low, high in (("backend_cpu_request", "backend_cpu_limit"),
                          ("backend_memory_request", "backend_memory_limit")):
            check_request_le_limit(self, low, high, errors)
        self._clean_derived_names(errors)
        self._clean_storage_changes(errors)
        if (self.sealed_secrets_certificate or "").strip():
            try:
                certificate_load(self.sealed_secrets_certificate)
            except ValidationError as exc:
                errors.setdefault("sealed_secrets_certificate", []).extend(exc.messages)
        if errors:
            raise ValidationError(errors)

    def _clean_compose(self, errors: dict[str, list[str]]) -> None:
        """Rules of a Docker Compose server (the guide's Path 1: Traefik + Let's Encrypt, age-encrypted secrets)."""
        if self.tls_mode == self.TLSMode.CERT_MANAGER_DNS01:
            errors.setdefault("tls_mode", []).append(
                "cert-manager runs in Kubernetes; a Compose server gets certificates from Traefik. Choose "
                "Let's Encrypt and pick the ACME challenge (HTTP-01 or DNS-01).")
        if self.storage_provisioner != self.StorageProvisioner.MINIKUBE_HOSTPATH:
            errors.setdefault("storage_provisioner", []).append(
                "A Compose server keeps data in local Docker volumes; EBS needs an EKS environment.")
        if (self.age_recipient or "").strip():
            try:
                recipient_load(self.age_recipient)
            except ValidationError as exc:
                errors.setdefault("age_recipient", []).extend(exc.messages)
        if self.backup_s3_region and not self.backup_s3_bucket:
            errors.setdefault("backup_s3_bucket", []).append("A backup region needs a bucket to upload to.")


    def _clean_storage_changes(self, errors: dict[str, list[str]]) -> None:
        """The StorageClass of an environment with project volumes cannot change in place (change_safety)."""
        if self._state.adding or self.pk is None:
            return
        stored = Environment.objects.filter(pk=self.pk).values(
            "storage_class_name", "storage_provisioner", "storage_encrypted").first()
        if stored is None:
            return
        volumes = self.projects.filter(state=domain.STATE_ACTIVE).count()
        for field in ("storage_class_name", "storage_provisioner", "storage_encrypted"):
            if field == "storage_encrypted" and self.storage_provisioner != self.StorageProvisioner.EBS_GP3:
                continue  # only the EBS class carries the encryption parameter
            problem = storage_class_change_problem(field=field, old=str(stored[field]),
                                                   new=str(getattr(self, field)), volumes=volumes)
            if problem:
                errors.setdefault(field, []).append(problem)

    def _clean_derived_names(self, errors: dict[str, list[str]]) -> None:
        """Names built from this environment's inputs must keep their limits (deployments.names), and one domain
        has one wildcard certificate."""
        if self.name and "name" not in errors:
            errors_name = names.derived_name_errors(names.environment_names(
                name=self.name, gitops_tool=self.gitops_tool,
                external_secrets_role=self.kind == self.Kind.EKS and not self.secrets_manager_role_arn))
            if errors_name:
                errors.setdefault("name", []).extend(errors_name)
        if self.image_registry:
            errors_registry = names.derived_name_errors(names.registry_names(self.image_registry))
            if errors_registry:
                errors.setdefault("image_registry", []).extend(errors_registry[:1])
        if not self.app_domain:
            return
        if self.tls_mode == self.TLSMode.CERT_MANAGER_DNS01:
            wildcard = f"*.{self.app_domain}"
            if len(wildcard) > names.DNS1123_SUBDOMAIN_MAX:
                errors.setdefault("app_domain", []).append(
                    f"The wildcard certificate name {wildcard} would be {len(wildcard)} characters; a DNS name holds "
                    f"at most {names.DNS1123_SUBDOMAIN_MAX}.")
            other = (Environment.objects.filter(app_domain=self.app_domain, tls_mode=self.TLSMode.CERT_MANAGER_DNS01)
                     .exclude(pk=self.pk).values_list("name", flat=True).first())
            if other:
                errors.setdefault("app_domain", []).append(
                    f"Environment {other} already issues the wildcard certificate for *.{self.app_domain}; one "
                    "domain has one wildcard certificate. Use another app domain (for example a subdomain).")
        if self.pk:
            # The longest project host of this environment must still be a DNS name under the new domain.
            labels = (self.projects.exclude(state=domain.STATE_DELETED).filter(containers__isnull=False)
                      .values_list("slug", "containers__directory"))
            longest = max((names.host_label(slug, directory) for slug, directory in labels), key=len, default=None)
            if longest is not None:
                host = f"{longest}.{self.app_domain}"
                if len(host) > names.DNS1123_SUBDOMAIN_MAX:
                    errors.setdefault("app_domain", []).append(
                        f"The Ingress host {host} would be {len(host)} characters; a host holds at most "
                        f"{names.DNS1123_SUBDOMAIN_MAX}. Use a shorter app domain.")


QUANTITY_FIELDS = ("backend_cpu_request", "backend_cpu_limit", "backend_memory_request", "backend_memory_limit")


def canonicalize_quantities(obj, fields) -> None:
    """Write each valid quantity field of ``obj`` in the form the API server stores (``1000m`` → ``1``,
    ``1024Mi`` → ``1Gi``; deployments.validation.canonical), so a synced object never differs from git. Fields
    whose value is not a valid quantity are left for their validators to report."""
    for field in fields:
        value = getattr(obj, field)
        try:
            v.parse_quantity(value)
            setattr(obj, field, canonical_quantity(value))
        except (ValidationError, NotCanonicalizable):
            continue


def check_request_le_limit(obj, request_field: str, limit_field: str, errors: dict) -> None:
    try:
        request = v.parse_quantity(getattr(obj, request_field))
        limit = v.parse_quantity(getattr(obj, limit_field))
    except ValidationError:
        return  # the field validators report the malformed value itself
    if request > limit:
        errors.setdefault(request_field, []).append(
            f"The request ({getattr(obj, request_field)}) is larger than the limit ({getattr(obj, limit_field)})."
        )


class NodeGroup(models.Model):
    """An EKS managed node group of an environment."""

    class CapacityType(models.TextChoices):
        ON_DEMAND = "ON_DEMAND", "On-demand"
        SPOT = "SPOT", "Spot"

    class Hosts(models.TextChoices):
        PLATFORM = "platform", "Platform (tesslate namespace)"
        USER_PROJECTS = "user-projects", "User projects (dev containers)"
        BOTH = "both", "Both"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="node_groups")
    name = models.CharField(max_length=63, validators=[v.validate_dns1123_label])
    capacity_type = models.CharField(max_length=9, choices=CapacityType.choices, default=CapacityType.ON_DEMAND)
    instance_types = models.CharField(
        max_length=255, validators=[v.validate_instance_types],
        help_text="Comma-separated EC2 instance types, for example t3.large, t3a.large.",
    )
    min_size = models.PositiveIntegerField(default=1)
    desired_size = models.PositiveIntegerField(default=2)
    max_size = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1), MaxValueValidator(450)])
    disk_size_gb = models.PositiveIntegerField("disk size (GiB)", default=50,
                                               validators=[MinValueValidator(20), MaxValueValidator(16384)])
    labels = models.TextField(blank=True, validators=[v.validate_labels_text],
                              help_text="key=value, one per line.")
    taints = models.TextField(blank=True, validators=[v.validate_taints_text],
                              help_text="key=value:Effect (NoSchedule, PreferNoSchedule, NoExecute), one per line.")
    hosts = models.CharField(max_length=16, choices=Hosts.choices, default=Hosts.PLATFORM)

    class Meta:
        ordering = ["environment__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="nodegroup_unique_name_per_environment"),
            models.CheckConstraint(condition=Q(min_size__lte=F("desired_size")) & Q(desired_size__lte=F("max_size")),
                                   name="nodegroup_min_le_desired_le_max",
                                   violation_error_message="Sizes must satisfy min ≤ desired ≤ max."),
        ]

    def __str__(self) -> str:
        return f"{self.environment.name}/{self.name}" if self.environment_id else self.name

    @property
    def instance_type_list(self) -> list[str]:
        return v.parse_instance_types(self.instance_types)

    @property
    def label_dict(self) -> dict[str, str]:
        return v.parse_labels(self.labels)

    @property
    def taint_list(self) -> list[dict[str, str]]:
        return v.parse_taints(self.taints)

    @property
    def hosts_user_projects(self) -> bool:
        return self.hosts in (self.Hosts.USER_PROJECTS, self.Hosts.BOTH)

    def clean(self) -> None:
        errors = {}
        if self.min_size is not None and self.desired_size is not None and self.min_size > self.desired_size:
            errors["min_size"] = f"The minimum ({self.min_size}) is larger than the desired size ({self.desired_size})."
        if self.desired_size is not None and self.max_size is not None and self.desired_size > self.max_size:
            errors["desired_size"] = (
                f"The desired size ({self.desired_size}) is larger than the maximum ({self.max_size}).")
        if errors:
            raise ValidationError(errors)


class Secret(models.Model):
    """One key of a Kubernetes Secret of an environment.

    The value is stored only encrypted (deployments.secrets.crypto)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="secrets")
    secret_name = models.CharField(
        max_length=253, default="tesslate-app-secrets", validators=[v.validate_dns1123_subdomain],
        help_text="Name of the Kubernetes Secret in namespace tesslate.",
    )
    key = models.CharField(max_length=253, validators=[v.validate_secret_key_name],
                           help_text="Key inside the Secret, for example LITELLM_MASTER_KEY.")
    description = models.CharField(max_length=255, blank=True)
    ciphertext = models.TextField(editable=False, help_text="Fernet token; never the plaintext.")
    fingerprint = models.CharField(max_length=24, editable=False,
                                   help_text="Short keyed hash of the value: tells versions apart, reveals nothing.")
    version = models.PositiveIntegerField(default=0, editable=False,
                                          help_text="Increases with every new value; rolls the pods that read it.")
    last_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    sealed_value = models.TextField(
        blank=True, editable=False,
        help_text="The value sealed for the cluster's Sealed Secrets certificate (base64, kubeseal format).",
    )
    sealed_for = models.CharField(
        max_length=100, blank=True, editable=False,
        help_text="Fingerprint of the certificate and version sealed_value was made for; resealed when either changes.",
    )
    age_value = models.TextField(
        blank=True, editable=False,
        help_text="Compose environments: the value encrypted to the server's age recipient (ASCII-armored).",
    )
    age_for = models.CharField(
        max_length=100, blank=True, editable=False,
        help_text="Fingerprint of the recipient and version age_value was made for; re-encrypted when either changes.",
    )
    synced_version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Last version written to AWS Secrets Manager (EKS environments).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment__name", "secret_name", "key"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "secret_name", "key"],
                                    name="secret_unique_key_per_environment",
                                    violation_error_message="This Secret already has this key in this environment."),
        ]

    def __str__(self) -> str:
        return f"{self.secret_name}/{self.key}"

    def clean(self) -> None:
        """Refuse Kubernetes Secret names that a controller or the rendered tree writes (deployments.names), and
        keys whose AWS Secrets Manager name would be too long."""
        errors: dict[str, list[str]] = {}
        if self.secret_name:
            reason = names.reserved_secret_name_reason(self.secret_name)
            if reason:
                errors.setdefault("secret_name", []).append(
                    f"{self.secret_name} is reserved: {reason}. Choose another Secret name.")
        if self.secret_name and self.key and self.environment_id:
            environment = self.environment
            errors_name = names.derived_name_errors(names.secret_names(
                environment=environment.name, secret_name=self.secret_name, key=self.key,
                external_secrets=environment.uses_external_secrets))
            if errors_name:
                errors.setdefault("secret_name", []).extend(errors_name)
        if errors:
            raise ValidationError(errors)

    @property
    def has_value(self) -> bool:
        return bool(self.ciphertext)


class RenderRun(JobRun):
    """One render of environments into the GitOps repository: who asked, what it did, how far it got."""

    environments = models.ManyToManyField(Environment, related_name="render_runs", blank=True)
    dry_run = models.BooleanField(default=False)
    allow_deletions = models.BooleanField(
        default=False, help_text="Confirmed: may delete more files than the deletion budget allows.")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When Redis took its job.")
    waiting_heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of a worker that picked the run and waits for the lock.")
    files_added = models.PositiveIntegerField(default=0)
    files_changed = models.PositiveIntegerField(default=0)
    files_deleted = models.PositiveIntegerField(default=0)
    commit_sha = models.CharField("commit SHA", max_length=40, blank=True, db_index=True)
    diff = models.TextField(blank=True)
    error_file = models.CharField(max_length=1000, blank=True)
    error_rule = models.CharField(max_length=100, blank=True)

    class Meta(JobRun.Meta):
        verbose_name = "render run"

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.get_status_display()})"

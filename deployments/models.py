"""Environments, their node groups and their secrets: what the portal renders into the GitOps repository."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from deployments import validators as v

MINIKUBE_PROVISIONER = "k8s.io/minikube-hostpath"
EBS_PROVISIONER = "ebs.csi.aws.com"


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

    class DatastoreMode(models.TextChoices):
        IN_CLUSTER = "in-cluster", "In cluster (PostgreSQL and Redis StatefulSets)"
        EXTERNAL = "external", "External (RDS / ElastiCache URLs in secrets)"

    name = models.CharField(
        max_length=63, unique=True, validators=[v.validate_dns1123_label],
        help_text="DNS-1123 label, for example aws-production. Names the overlay directory in git.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MINIKUBE)
    app_domain = models.CharField(
        max_length=253, validators=[v.validate_domain_name],
        help_text="Projects get one-label subdomains of it: {slug}-{dir}.{app domain}.",
    )
    ingress_class = models.CharField(max_length=63, default="nginx", validators=[v.validate_dns1123_subdomain])
    ingress_controller_namespace = models.CharField(
        max_length=63, default="ingress-nginx", validators=[v.validate_dns1123_label],
        help_text="Namespace of the ingress controller pods: the only namespace besides tesslate whose pods may "
                  "open connections to project pods (NetworkPolicy project-isolation).",
    )
    tls_mode = models.CharField(max_length=24, choices=TLSMode.choices, default=TLSMode.NONE)
    acme_email = models.EmailField(blank=True, help_text="Contact address for the ACME account (TLS modes only).")
    cloudflare_api_token_secret = models.CharField(
        max_length=253, blank=True, default="cloudflare-api-token", validators=[v.validate_dns1123_subdomain],
        help_text="Kubernetes Secret (key api-token) in the cert-manager namespace that holds the Cloudflare token.",
    )

    storage_class_name = models.CharField(
        max_length=253, default="tesslate-block-storage", validators=[v.validate_dns1123_subdomain],
    )
    storage_provisioner = models.CharField(
        max_length=24, choices=StorageProvisioner.choices, default=StorageProvisioner.MINIKUBE_HOSTPATH,
    )
    storage_encrypted = models.BooleanField(default=True, help_text="EBS only: encrypt volumes at rest.")
    volume_snapshot_class = models.CharField(
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
    backend_cpu_request = models.CharField(max_length=16, default="500m", validators=[v.validate_cpu_quantity])
    backend_cpu_limit = models.CharField(max_length=16, default="2", validators=[v.validate_cpu_quantity])
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

    aws_account_id = models.CharField(
        max_length=12, blank=True,
        help_text="EKS only: the 12-digit AWS account id.",
    )
    aws_region = models.CharField(max_length=32, blank=True, help_text="EKS only, for example us-east-1.")
    eks_cluster_name = models.CharField(max_length=100, blank=True, help_text="EKS only.")

    disabled_addons = models.CharField(
        max_length=255, blank=True, validators=[v.validate_addon_names],
        help_text="Cluster add-ons the cluster already runs, so git does not install them (comma-separated): "
                  + ", ".join(v.ADDON_NAMES) + ". Each is installed only where the environment needs it.",
    )

    protected = models.BooleanField(default=False, help_text="Production: changes need a second person's approval.")
    gitops_tool = models.CharField(max_length=8, choices=GitOpsTool.choices, default=GitOpsTool.ARGOCD)

    sealed_secrets_certificate = models.TextField(
        blank=True,
        help_text="Clusters without AWS: the Sealed Secrets controller's public certificate "
                  "(PEM, `kubeseal --fetch-cert`).",
    )

    secrets_manager_role_arn = models.CharField(
        max_length=2048, blank=True,
        help_text="EKS only: IAM role (IRSA) that External Secrets assumes to read AWS Secrets Manager. "
                  "Empty: arn:aws:iam::{account}:role/tesslate-external-secrets-{environment}.",
    )

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
        return EBS_PROVISIONER if self.storage_provisioner == self.StorageProvisioner.EBS_GP3 else MINIKUBE_PROVISIONER

    @property
    def supports_snapshots(self) -> bool:
        return self.kind == self.Kind.EKS and self.storage_provisioner == self.StorageProvisioner.EBS_GP3

    @property
    def uses_external_secrets(self) -> bool:
        """EKS reads secrets from AWS Secrets Manager; other clusters get SealedSecrets."""
        return self.kind == self.Kind.EKS

    @property
    def scheme(self) -> str:
        return "http" if self.tls_mode == self.TLSMode.NONE else "https"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.kind == self.Kind.EKS:
            for field in ("aws_account_id", "aws_region", "eks_cluster_name"):
                if not getattr(self, field):
                    errors.setdefault(field, []).append("Required for an EKS environment.")
        if self.aws_account_id and not (self.aws_account_id.isdigit() and len(self.aws_account_id) == 12):
            errors.setdefault("aws_account_id", []).append("An AWS account id is 12 digits.")
        if self.aws_region and not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", self.aws_region):
            errors.setdefault("aws_region", []).append(
                f"{self.aws_region} is not an AWS region (for example us-east-1).")
        if self.eks_cluster_name and not re.match(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", self.eks_cluster_name):
            errors.setdefault("eks_cluster_name", []).append(
                "An EKS cluster name starts with a letter or digit and holds letters, digits, '-' and '_'.")
        if self.storage_provisioner == self.StorageProvisioner.EBS_GP3 and self.kind != self.Kind.EKS:
            errors.setdefault("storage_provisioner", []).append("EBS gp3 storage needs an EKS environment.")
        if self.kind == self.Kind.MINIKUBE and self.tls_mode != self.TLSMode.NONE:
            errors.setdefault("tls_mode", []).append("Minikube is HTTP only; choose None.")
        if self.tls_mode != self.TLSMode.NONE and not self.acme_email:
            errors.setdefault("acme_email", []).append("The ACME account needs a contact address for TLS.")
        if self.tls_mode == self.TLSMode.CERT_MANAGER_DNS01 and not self.cloudflare_api_token_secret:
            errors.setdefault("cloudflare_api_token_secret", []).append(
                "DNS01 with Cloudflare needs the token's Secret.")
        for low, high in (("backend_cpu_request", "backend_cpu_limit"),
                          ("backend_memory_request", "backend_memory_limit")):
            check_request_le_limit(self, low, high, errors)
        if (self.sealed_secrets_certificate or "").strip():
            from deployments.sealing import certificate_load  # sealing imports this module

            try:
                certificate_load(self.sealed_secrets_certificate)
            except ValidationError as exc:
                errors.setdefault("sealed_secrets_certificate", []).extend(exc.messages)
        if errors:
            raise ValidationError(errors)


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
    disk_size_gb = models.PositiveIntegerField(default=50, validators=[MinValueValidator(20), MaxValueValidator(16384)])
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
    """One key of a Kubernetes Secret of an environment. The value is stored only encrypted (deployments.crypto)."""

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

    @property
    def has_value(self) -> bool:
        return bool(self.ciphertext)


class RenderRun(models.Model):
    """One render of environments into the GitOps repository: who asked, what it did, how far it got."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        NO_CHANGE = "no_change", "No change"
        FAILED = "failed", "Failed"

    FINISHED = (Status.SUCCEEDED, Status.NO_CHANGE, Status.FAILED)

    environments = models.ManyToManyField(Environment, related_name="render_runs", blank=True)
    triggered_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="render_runs")
    reason = models.CharField(max_length=500, blank=True)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    log = models.TextField(blank=True)
    files_added = models.PositiveIntegerField(default=0)
    files_changed = models.PositiveIntegerField(default=0)
    files_deleted = models.PositiveIntegerField(default=0)
    commit_sha = models.CharField(max_length=40, blank=True, db_index=True)
    diff = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_file = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

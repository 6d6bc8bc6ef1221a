"""Costs: the price table, per-environment cost settings and assumptions, cached Cost Explorer actuals, sync runs.

Sources: the operator guide's "AWS Cost Estimation" table and "Cost optimization tips"; DOMAIN.md "Nodes and cost".
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from deployments.models import Environment
from jobs.models import JobRun

# The guide's monthly figures use 730 hours a month (AWS's convention: 8,760 h / 12).
HOURS_PER_MONTH = Decimal("730")


class Price(models.Model):
    """One list price (us-east-1 unless ``region`` says otherwise), editable in the admin.

    ``key`` is what the estimator looks up: ``eks.control_plane``, ``ec2.<instance type>``, ``ebs.gp3``,
    ``ebs.gp2``, ``ebs.snapshot``, ``vpc.nat_gateway``, ``s3.standard``, ``data_transfer.out``,
    ``compose.server``, ``spot.discount``. The AWS Pricing API is not available everywhere the portal runs (not in
    the local emulator either), so prices are kept here with the date they were read (``as_of``).
    """

    class Unit(models.TextChoices):
        HOUR = "hour", "USD per hour"
        GB_MONTH = "gb-month", "USD per GB-month"
        GB = "gb", "USD per GB"
        MONTH = "month", "USD per month"
        FRACTION = "fraction", "Fraction (0–1)"

    key = models.CharField(max_length=64, unique=True,
                           help_text="What the estimator looks up, for example ec2.t3.large or ebs.gp3.")
    description = models.CharField(max_length=200)
    unit = models.CharField(max_length=10, choices=Unit.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0"))])
    region = models.CharField(max_length=32, default="us-east-1")
    as_of = models.DateField(help_text="When this price was read from the AWS price list (or the vendor).")
    vcpu = models.PositiveSmallIntegerField(null=True, blank=True, help_text="EC2 instance types only.")
    memory_gib = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True,
                                     help_text="EC2 instance types only.")
    source = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}: {self.amount} {self.get_unit_display()}"

    def clean(self) -> None:
        if self.unit == self.Unit.FRACTION and self.amount is not None and self.amount > 1:
            raise ValidationError({"amount": "A fraction is between 0 and 1 (0.70 means 70 %)."})
        if self.key and self.key.startswith("ec2.") and (not self.vcpu or not self.memory_gib):
            raise ValidationError({"vcpu": "An EC2 instance type needs its vCPU count and memory (GiB)."})


class EnvironmentCostSettings(models.Model):
    """Cost settings and assumptions of one environment, plus the state of its Cost Explorer cache.

    The assumptions default to the operator guide's baseline (EBS ~100 GB, S3 ~10 GB, data transfer ~$50 a month,
    NAT gateways in 2 AZs): they stand for what the portal's model does not size.
    """

    class VolumeType(models.TextChoices):
        GP3 = "gp3", "gp3"
        GP2 = "gp2", "gp2"

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="cost_settings")
    cost_tag_key = models.CharField(
        max_length=128, default="tesslate:environment",
        help_text="Cost-allocation tag (activated in the Billing console) that marks this environment's resources.")
    cost_tag_value = models.CharField(max_length=256, blank=True,
                                      help_text="Its value; empty: the environment's name.")
    availability_zones = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(6)],
        help_text="One NAT gateway per AZ (the guide: 2 AZs).")
    baseline_ebs_gb = models.PositiveIntegerField(
        default=100, help_text="EBS the model does not size: node root disks and the platform's volumes "
                               "(the guide: ~100 GB).")
    baseline_volume_type = models.CharField(max_length=3, choices=VolumeType.choices, default=VolumeType.GP3)
    s3_storage_gb = models.PositiveIntegerField(default=10,
                                                help_text="Project bucket, S3 Standard (the guide: ~10 GB).")
    data_transfer_out_gb = models.PositiveIntegerField(
        default=556, help_text="Data transfer out to the internet per month (the guide: ~$50, i.e. ~556 GB at "
                               "$0.09/GB).")

    request_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Cost Explorer requests (pages) made for this environment; $0.01 each.")
    last_fetched_at = models.DateTimeField(null=True, blank=True, editable=False,
                                           help_text="Last successful Cost Explorer fetch.")
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    last_error_kind = models.CharField(max_length=16, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "environment cost settings"
        verbose_name_plural = "environment cost settings"
        ordering = ["environment__name"]

    def __str__(self) -> str:
        return f"Cost settings of {self.environment.name}" if self.environment_id else "Cost settings"

    @property
    def tag_value(self) -> str:
        return self.cost_tag_value or (self.environment.name if self.environment_id else "")


class CostActual(models.Model):
    """One Cost Explorer figure: an AWS service's unblended cost in one period (a month or a day)."""

    class Granularity(models.TextChoices):
        MONTHLY = "MONTHLY", "Monthly"
        DAILY = "DAILY", "Daily"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="cost_actuals")
    granularity = models.CharField(max_length=7, choices=Granularity.choices)
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive, as Cost Explorer gives it.")
    service = models.CharField(max_length=200, help_text="Cost Explorer dimension SERVICE.")
    amount = models.DecimalField(max_digits=14, decimal_places=6)
    unit = models.CharField(max_length=8, default="USD")
    estimated = models.BooleanField(default=False, help_text="Cost Explorer marks the figure as not final yet.")
    fetched_at = models.DateTimeField()

    class Meta:
        ordering = ["environment__name", "granularity", "period_start", "service"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "granularity", "period_start", "service"],
                                    name="costactual_unique_period_service"),
        ]

    def __str__(self) -> str:
        return f"{self.environment.name} {self.period_start} {self.service}: {self.amount} {self.unit}"


class CostSyncRun(JobRun):
    """One Cost Explorer sync over one or more environments."""

    environments = models.ManyToManyField(Environment, related_name="cost_sync_runs", blank=True)
    forced = models.BooleanField(default=False, help_text="Fetched even when today's figures were cached.")
    request_count = models.PositiveIntegerField(default=0, help_text="Cost Explorer requests (pages) made.")
    fetched_count = models.PositiveIntegerField(default=0, help_text="Environments fetched.")
    cached_count = models.PositiveIntegerField(default=0, help_text="Environments skipped: fetched today already.")
    attempt_count = models.PositiveSmallIntegerField(default=0, help_text="Attempts, retries included.")

    class Meta(JobRun.Meta):
        verbose_name = "cost sync run"

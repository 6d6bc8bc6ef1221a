"""Seed the price table with us-east-1 list prices (Linux on-demand), as read on the date below.

The admin edits them afterwards; this migration never overwrites a price that already exists.
"""

import datetime
from decimal import Decimal

from django.db import migrations

AS_OF = datetime.date(2026, 11, 30)

# key, description, unit, amount, vCPU, memory GiB, source
PRICES = [
    ("eks.control_plane", "EKS cluster control plane", "hour", "0.10", None, None, "aws.amazon.com/eks/pricing"),
    ("ec2.t3.medium", "EC2 t3.medium, Linux on-demand", "hour", "0.0416", 2, "4", "aws.amazon.com/ec2/pricing"),
    ("ec2.t3.large", "EC2 t3.large, Linux on-demand", "hour", "0.0832", 2, "8", "aws.amazon.com/ec2/pricing"),
    ("ec2.t3.xlarge", "EC2 t3.xlarge, Linux on-demand", "hour", "0.1664", 4, "16", "aws.amazon.com/ec2/pricing"),
    ("ec2.t3a.medium", "EC2 t3a.medium, Linux on-demand", "hour", "0.0376", 2, "4", "aws.amazon.com/ec2/pricing"),
    ("ec2.t3a.large", "EC2 t3a.large, Linux on-demand", "hour", "0.0752", 2, "8", "aws.amazon.com/ec2/pricing"),
    ("ec2.t3a.xlarge", "EC2 t3a.xlarge, Linux on-demand", "hour", "0.1504", 4, "16", "aws.amazon.com/ec2/pricing"),
    ("ebs.gp3", "EBS gp3 volume storage", "gb-month", "0.08", None, None, "aws.amazon.com/ebs/pricing"),
    ("ebs.gp2", "EBS gp2 volume storage", "gb-month", "0.10", None, None, "aws.amazon.com/ebs/pricing"),
    ("ebs.snapshot", "EBS snapshot storage (standard tier)", "gb-month", "0.05", None, None,
     "aws.amazon.com/ebs/pricing"),
    ("vpc.nat_gateway", "NAT gateway, per gateway (one per AZ)", "hour", "0.045", None, None,
     "aws.amazon.com/vpc/pricing"),
    ("s3.standard", "S3 Standard storage (first 50 TB)", "gb-month", "0.023", None, None, "aws.amazon.com/s3/pricing"),
    ("data_transfer.out", "Data transfer out to the internet (first 10 TB)", "gb", "0.09", None, None,
     "aws.amazon.com/ec2/pricing/on-demand (data transfer)"),
    ("compose.server", "Docker Compose single server (the guide's flat price)", "month", "120", None, None,
     "operator guide, deployment paths table"),
    ("spot.discount", "Spot discount off the on-demand price (the guide: up to 90 %)", "fraction", "0.70", None, None,
     "EC2 Spot pricing history for t3/t3a in us-east-1; the guide quotes up to 90 %"),
]


def seed(apps, schema_editor):
    Price = apps.get_model("costs", "Price")
    for key, description, unit, amount, vcpu, memory, source in PRICES:
        Price.objects.get_or_create(key=key, defaults=dict(
            description=description, unit=unit, amount=Decimal(amount), region="us-east-1", as_of=AS_OF,
            vcpu=vcpu, memory_gib=Decimal(memory) if memory else None, source=source))


class Migration(migrations.Migration):

    dependencies = [("costs", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]

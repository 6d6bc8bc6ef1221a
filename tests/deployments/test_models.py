"""Bad input per model: every rule gives a field error with a message that says what to fix."""

import pytest
from django.db import IntegrityError, transaction

from deployments.models import Environment, NodeGroup
from tests.factories import (
    assert_field_error,
    eks_environment_factory,
    environment_factory,
    field_errors,
    node_group_factory,
)

pytestmark = pytest.mark.django_db


def _valid_environment(**overrides) -> Environment:
    fields = dict(name="staging", kind="minikube", app_domain="studio.example.com")
    fields.update(overrides)
    return Environment(**fields)


ENVIRONMENT_CASES = [
    # overrides, field, fragment of the message
    (dict(name="Prod_1"), "name", "not a DNS-1123 label"),
    (dict(name="-prod"), "name", "not a DNS-1123 label"),
    (dict(name="a" * 64), "name", "at most 63"),
    (dict(name=""), "name", "cannot be blank"),
    (dict(app_domain="studio..example.com"), "app_domain", "not a valid domain name"),
    (dict(app_domain="Studio.Example.com"), "app_domain", "not a valid domain name"),
    (dict(app_domain="10.0.0.1"), "app_domain", "IP address"),
    (dict(app_domain="under_score.example.com"), "app_domain", "not a valid domain name"),
    (dict(ingress_class="Nginx!"), "ingress_class", "DNS-1123 subdomain"),
    (dict(kind="openshift"), "kind", "not a valid choice"),
    (dict(backend_cpu_request="half"), "backend_cpu_request", "not a Kubernetes quantity"),
    (dict(backend_cpu_request="512Mi"), "backend_cpu_request", "not a CPU quantity"),
    (dict(backend_cpu_request="0"), "backend_cpu_request", "more than zero"),
    (dict(backend_memory_limit="2GB"), "backend_memory_limit", "not a Kubernetes quantity"),
    (dict(backend_memory_request="500m"), "backend_memory_request", "milli-bytes"),
    (dict(backend_cpu_request="3", backend_cpu_limit="2"), "backend_cpu_request", "larger than the limit"),
    (dict(backend_memory_request="4Gi", backend_memory_limit="2Gi"), "backend_memory_request",
     "larger than the limit"),
    (dict(backend_replicas=0), "backend_replicas", "greater than or equal to 1"),
    (dict(hibernation_idle_minutes=0), "hibernation_idle_minutes", "greater than or equal to 1"),
    (dict(max_snapshots_per_project=0), "max_snapshots_per_project", "greater than or equal to 1"),
    (dict(image_registry="Registry.Example.com/"), "image_registry", "not an image registry"),
    (dict(image_tag="-bad"), "image_tag", "not an image tag"),
    (dict(tls_mode="cert-manager-dns01"), "tls_mode", "Minikube is HTTP only"),
    (dict(kind="compose", tls_mode="letsencrypt-http01"), "acme_email", "needs a contact address"),
    (dict(storage_provisioner="ebs-gp3"), "storage_provisioner", "needs an EKS environment"),
    (dict(kind="eks"), "aws_account_id", "Required for an EKS environment"),
    (dict(kind="eks", aws_account_id="1234", aws_region="us-east-1", eks_cluster_name="c"), "aws_account_id",
     "12 digits"),
    (dict(kind="eks", aws_account_id="123456789012", aws_region="useast1", eks_cluster_name="c"), "aws_region",
     "not an AWS region"),
    (dict(kind="eks", aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="-bad name"),
     "eks_cluster_name", "starts with a letter or digit"),
    (dict(volume_snapshot_class="Snap Class"), "volume_snapshot_class", "DNS-1123 subdomain"),
    (dict(name="staging\n"), "name", "not a DNS-1123 label"),
    (dict(app_domain="studio.example.com\n"), "app_domain", "not a valid domain name"),
    (dict(app_domain="studio.example.com."), "app_domain", "no trailing dot"),
    (dict(kind="eks", aws_account_id="１２３４５６７８９０１２", aws_region="us-east-1", eks_cluster_name="c"),
     "aws_account_id", "12 digits"),
    (dict(kind="eks", aws_account_id="123456789012", aws_region="us-east-1\n", eks_cluster_name="c"),
     "aws_region", "not an AWS region"),
    (dict(kind="eks", aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="tesslate\n"),
     "eks_cluster_name", "starts with a letter or digit"),
    (dict(image_tag="beta\n"), "image_tag", "not an image tag"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), ENVIRONMENT_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(ENVIRONMENT_CASES)])
def test_environment_rejects_bad_input(overrides, field, fragment):
    assert_field_error(_valid_environment(**overrides), field, fragment)


def test_environment_name_is_unique():
    environment_factory(name="prod")
    errors = field_errors(_valid_environment(name="prod"))
    assert "already exists" in errors["name"][0]


def test_valid_environments_pass():
    _valid_environment().full_clean()
    _valid_environment(name="local", app_domain="localhost").full_clean()
    _valid_environment(name="prod", kind="eks", storage_provisioner="ebs-gp3", tls_mode="cert-manager-dns01",
                       acme_email="ops@example.com", aws_account_id="123456789012", aws_region="eu-west-1",
                       eks_cluster_name="tesslate-prod", image_registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                       backend_cpu_request="1", backend_cpu_limit="4", backend_memory_request="2Gi",
                       backend_memory_limit="4Gi").full_clean()


def test_database_refuses_ebs_outside_eks():
    environment = environment_factory()
    Environment.objects.filter(pk=environment.pk).update(storage_provisioner="minikube-hostpath")
    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.filter(pk=environment.pk).update(storage_provisioner="ebs-gp3")


NODE_GROUP_CASES = [
    (dict(name="Spot_Group"), "name", "not a DNS-1123 label"),
    (dict(instance_types=""), "instance_types", "cannot be blank"),
    (dict(instance_types="t3large"), "instance_types", "not an EC2 instance type"),
    (dict(instance_types="t3.large, t3.large"), "instance_types", "listed twice"),
    (dict(min_size=3, desired_size=2, max_size=5), "min_size", "larger than the desired size"),
    (dict(min_size=1, desired_size=6, max_size=5), "desired_size", "larger than the maximum"),
    (dict(max_size=0, min_size=0, desired_size=0), "max_size", "greater than or equal to 1"),
    (dict(disk_size_gb=5), "disk_size_gb", "greater than or equal to 20"),
    (dict(capacity_type="RESERVED"), "capacity_type", "not a valid choice"),
    (dict(labels="tesslate.io/workload-type"), "labels", "not key=value"),
    (dict(labels="bad key=x"), "labels", "not a valid label key"),
    (dict(labels="team=-x"), "labels", "not a valid label value"),
    (dict(labels="a=1\na=2"), "labels", "given twice"),
    (dict(labels="/name=x"), "labels", "prefix before '/' is empty"),
    (dict(labels="team=ab٣"), "labels", "not a valid label value"),
    (dict(instance_types="t3.large\u00a0t3.xlarge"), "instance_types", "not an EC2 instance type"),
    (dict(taints="tesslate.io/spot=true"), "taints", "not a taint"),
    (dict(taints="tesslate.io/spot=true:Sometimes"), "taints", "NoSchedule, PreferNoSchedule, NoExecute"),
    (dict(taints="bad key=true:NoSchedule"), "taints", "not a valid label key"),
    (dict(hosts="everything"), "hosts", "not a valid choice"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), NODE_GROUP_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(NODE_GROUP_CASES)])
def test_node_group_rejects_bad_input(overrides, field, fragment):
    environment = eks_environment_factory()
    fields = dict(environment=environment, name="spot", instance_types="t3.large", min_size=0, desired_size=1,
                  max_size=10)
    fields.update(overrides)
    assert_field_error(NodeGroup(**fields), field, fragment)


def test_node_group_sizes_are_enforced_by_the_database():
    group = node_group_factory(eks_environment_factory(), min_size=1, desired_size=2, max_size=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        NodeGroup.objects.filter(pk=group.pk).update(desired_size=9)


def test_node_group_parses_labels_and_taints():
    group = node_group_factory(eks_environment_factory(), capacity_type="SPOT", min_size=0, desired_size=0,
                               max_size=10, instance_types="t3.large,t3a.xlarge",
                               labels="tesslate.io/workload-type=user-project",
                               taints="tesslate.io/spot=true:PreferNoSchedule\ndedicated:NoSchedule")
    assert group.instance_type_list == ["t3.large", "t3a.xlarge"]
    assert group.label_dict == {"tesslate.io/workload-type": "user-project"}
    assert group.taint_list == [
        {"key": "tesslate.io/spot", "value": "true", "effect": "PreferNoSchedule"},
        {"key": "dedicated", "value": "", "effect": "NoSchedule"},
    ]


def test_environment_quantities_are_stored_in_canonical_form():
    environment = environment_factory(backend_cpu_request="0.5", backend_cpu_limit="2000m",
                                      backend_memory_request="1024Mi", backend_memory_limit="2048Mi")
    environment.refresh_from_db()
    assert (environment.backend_cpu_request, environment.backend_cpu_limit, environment.backend_memory_request,
            environment.backend_memory_limit) == ("500m", "2", "1Gi", "2Gi")

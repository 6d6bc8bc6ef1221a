import pytest
from django.core.management import call_command

from deployments.models import Environment, NodeGroup, Secret
from projects.models import Container, Project


def _snapshot():
    return {
        "environments": sorted(Environment.objects.values_list("name", "kind", "app_domain", "tls_mode",
                                                                "image_registry", "image_tag", "protected")),
        "node_groups": sorted(NodeGroup.objects.values_list("environment__name", "name", "capacity_type",
                                                            "instance_types", "min_size", "desired_size",
                                                            "max_size", "labels", "taints")),
        "secrets": sorted(Secret.objects.values_list("environment__name", "secret_name", "key", "ciphertext",
                                                     "fingerprint", "version")),
        "projects": sorted(Project.objects.values_list("id", "environment__name", "slug", "state",
                                                       "restore_snapshot_id")),
        "containers": sorted(Container.objects.values_list("project__slug", "directory", "role", "image", "port")),
    }


@pytest.mark.django_db
def test_load_demo_twice_gives_the_same_data():
    call_command("load_demo")
    first = _snapshot()
    call_command("load_demo")
    assert _snapshot() == first
    assert {name for name, *_ in first["environments"]} == {"minikube", "aws-production", "single-server"}


@pytest.mark.django_db
def test_demo_matches_the_operator_guide():
    call_command("load_demo")
    production = Environment.objects.get(name="aws-production")
    assert production.kind == "eks" and production.supports_snapshots and production.protected
    primary = production.node_groups.get(name="primary")
    assert (primary.capacity_type, primary.instance_type_list, primary.min_size, primary.desired_size,
            primary.max_size, primary.disk_size_gb) == ("ON_DEMAND", ["t3.large"], 1, 2, 5, 50)
    spot = production.node_groups.get(name="spot")
    assert spot.capacity_type == "SPOT"
    assert spot.instance_type_list == ["t3.large", "t3.xlarge", "t3a.large", "t3a.xlarge"]
    assert (spot.min_size, spot.max_size) == (0, 10)
    assert spot.label_dict == {"tesslate.io/workload-type": "user-project"}
    assert spot.taint_list == [{"key": "tesslate.io/spot", "value": "true", "effect": "PreferNoSchedule"}]
    assert set(production.secrets.values_list("key", flat=True)) == {
        "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LITELLM_API_BASE", "LITELLM_MASTER_KEY"}
    assert production.datastore_mode == "external", "RDS / ElastiCache: the URLs are the only credentials"
    minikube = Environment.objects.get(name="minikube")
    assert minikube.tls_mode == "none" and minikube.provisioner == "k8s.io/minikube-hostpath"
    assert not minikube.supports_snapshots
    roles = set(Container.objects.filter(project__slug="todo-app").values_list("role", flat=True))
    assert roles == {"frontend", "backend", "database"}

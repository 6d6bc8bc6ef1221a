"""Every admin page renders for a superuser, sends anonymous users to the login, and refuses bad input."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deployments.models import Environment
from projects.demo import demo_load
from projects.models import Container, Project
from tests.factories import container_factory, project_factory

pytestmark = pytest.mark.django_db

OUR_APPS = {"deployments", "projects", "costs", "live"}


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    return client


@pytest.fixture
def demo():
    demo_load()


def _registered():
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in OUR_APPS]


def _pages():
    pages = []
    for model, _model_admin in _registered():
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        obj = model.objects.first()
        if obj is not None:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk]))
    return pages


def test_every_model_of_the_portal_is_in_the_admin():
    registered = {model for model, _ in _registered()}
    from deployments.models import NodeGroup, Secret
    assert {Environment, NodeGroup, Secret, Project} <= registered


def test_every_admin_page_renders_for_a_superuser(superuser_client, demo):
    pages = _pages()
    assert len(pages) >= 4 * 4
    for url in pages:
        response = superuser_client.get(url)
        if url.endswith("/add/") and response.status_code == 403:
            continue  # read-only models (runs) have no add page
        assert response.status_code == 200, (url, response.status_code)


def test_every_admin_page_sends_anonymous_users_to_login(client, demo):
    for url in _pages():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), (url, response["Location"])


def test_project_list_has_constant_queries(superuser_client):
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    url = reverse("admin:projects_project_changelist")

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert superuser_client.get(url).status_code == 200
        return len(ctx)

    for n in range(3):
        project_factory(environment, slug=f"small-{n}", containers=("frontend", "backend"))
    few = count_queries()
    for n in range(40):
        project_factory(environment, slug=f"big-{n}", containers=("frontend", "backend"))
    assert count_queries() == few


def test_project_list_links_hosts(superuser_client, demo):
    response = superuser_client.get(reverse("admin:projects_project_changelist"))
    assert b'href="http://todo-app-frontend.localhost"' in response.content
    assert b'href="https://crm-dashboard-frontend.studio.example.com"' in response.content
    assert b"proj-" in response.content


def _environment_post_data(**overrides):
    data = {
        "name": "staging", "kind": "minikube", "app_domain": "staging.example.com", "ingress_class": "nginx",
        "tls_mode": "none", "acme_email": "", "cloudflare_api_token_secret": "cloudflare-api-token",
        "storage_class_name": "tesslate-block-storage", "storage_provisioner": "minikube-hostpath",
        "storage_encrypted": "on", "volume_snapshot_class": "tesslate-ebs-snapshots",
        "hibernation_idle_minutes": "10", "snapshot_retention_days": "30", "max_snapshots_per_project": "5",
        "image_registry": "", "image_tag": "latest", "backend_replicas": "1", "backend_cpu_request": "500m",
        "backend_cpu_limit": "2", "backend_memory_request": "1Gi", "backend_memory_limit": "2Gi",
        "aws_account_id": "", "aws_region": "", "eks_cluster_name": "", "gitops_tool": "argocd",
        "sealed_secrets_certificate": "", "secrets_manager_role_arn": "",
        "ingress_controller_namespace": "ingress-nginx", "backend_readiness_path": "/health",
        "datastore_mode": "in-cluster", "disabled_addons": "",
        "node_groups-TOTAL_FORMS": "0", "node_groups-INITIAL_FORMS": "0",
        "secrets-TOTAL_FORMS": "0", "secrets-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"name": "Staging!"}, "is not a DNS-1123 label"),
    ({"app_domain": "not a domain"}, "is not a valid domain name"),
    ({"backend_cpu_request": "lots"}, "is not a Kubernetes quantity"),
    ({"backend_memory_request": "4Gi"}, "is larger than the limit"),
    ({"kind": "eks"}, "Required for an EKS environment."),
    ({"node_groups-TOTAL_FORMS": "1", "node_groups-0-name": "spot", "node_groups-0-capacity_type": "SPOT",
      "node_groups-0-instance_types": "t3.large", "node_groups-0-min_size": "3", "node_groups-0-desired_size": "1",
      "node_groups-0-max_size": "5", "node_groups-0-disk_size_gb": "50", "node_groups-0-hosts": "user-projects",
      "node_groups-0-taints": "tesslate.io/spot=true:Sometimes"},
     "NoSchedule, PreferNoSchedule, NoExecute"),
])
def test_environment_form_refuses_bad_input_with_a_field_error(superuser_client, overrides, fragment):
    response = superuser_client.post(reverse("admin:deployments_environment_add"), _environment_post_data(**overrides))
    assert response.status_code == 200  # the form again, not a redirect and not a 500
    assert fragment in response.content.decode()
    assert not Environment.objects.filter(name__in=["staging", overrides.get("name", "")]).exists()


def test_environment_form_accepts_good_input(superuser_client):
    response = superuser_client.post(reverse("admin:deployments_environment_add"), _environment_post_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Environment.objects.get(name="staging").app_domain == "staging.example.com"


def _project_post_data(environment, containers, **overrides):
    data = {"name": "Shop", "slug": "shop", "environment": str(environment.pk), "owner": "user-9",
            "state": "active", "volume_size": "5Gi", "restore_snapshot_id": "",
            "containers-TOTAL_FORMS": str(len(containers)), "containers-INITIAL_FORMS": "0"}
    for i, (directory, role) in enumerate(containers):
        data.update({
            f"containers-{i}-directory": directory, f"containers-{i}-role": role,
            f"containers-{i}-image": "tesslate-devserver:latest", f"containers-{i}-port": "3000",
            f"containers-{i}-cpu_request": "100m", f"containers-{i}-cpu_limit": "1",
            f"containers-{i}-memory_request": "256Mi", f"containers-{i}-memory_limit": "1Gi",
            f"containers-{i}-data_volume_size": "1Gi", f"containers-{i}-probe_path": "/",
            f"containers-{i}-startup_timeout_seconds": "600",
        })
    data.update(overrides)
    return data


def test_project_form_refuses_a_host_taken_in_the_environment(superuser_client):
    environment = Environment.objects.create(name="hosts", app_domain="hosts.example.com")
    other = project_factory(environment, slug="shop-front", containers=())
    container_factory(other, directory="web")  # host shop-front-web
    data = _project_post_data(environment, [("front-web", "frontend")])  # host shop-front-web again
    response = superuser_client.post(reverse("admin:projects_project_add"), data)
    assert response.status_code == 200
    assert "is already used by project shop-front" in response.content.decode()
    assert not Project.objects.filter(slug="shop").exists()


def test_project_form_refuses_hosts_longer_than_a_dns_label(superuser_client):
    environment = Environment.objects.create(name="long", app_domain="long.example.com")
    data = _project_post_data(environment, [("d" * 54, "frontend")], slug="s" * 20)
    response = superuser_client.post(reverse("admin:projects_project_add"), data)
    assert response.status_code == 200
    assert "a DNS label has at most 63" in response.content.decode()
    assert not Project.objects.exists()


def test_project_form_refuses_bad_container_input(superuser_client):
    environment = Environment.objects.create(name="bad", app_domain="bad.example.com")
    data = _project_post_data(environment, [("web", "frontend")], **{"containers-0-memory_request": "4Gi"})
    response = superuser_client.post(reverse("admin:projects_project_add"), data)
    assert response.status_code == 200
    assert "is larger than the limit" in response.content.decode()
    assert not Project.objects.exists() and not Container.objects.exists()


def test_project_form_creates_a_project_with_containers(superuser_client):
    environment = Environment.objects.create(name="ok", app_domain="ok.example.com")
    data = _project_post_data(environment, [("web", "frontend"), ("db", "database")])
    response = superuser_client.post(reverse("admin:projects_project_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    project = Project.objects.get(slug="shop")
    assert sorted(c.workload_name for c in project.containers.all()) == ["dev-web", "svc-db"]

"""Cluster add-ons from git: Argo CD Applications with Helm sources or Flux HelmRepository + HelmRelease, pinned
chart versions, only what each environment needs, each one switchable (Environment.disabled_addons)."""

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from deployments import validators
from deployments.models import Environment
from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_load
from tests.deployments.rendering.test_rendering import SOURCE_URL, assert_objects_validate, build_all, find
from tests.factories import assert_field_error, eks_environment_factory, environment_factory

pytestmark = pytest.mark.django_db
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


@pytest.fixture
def built(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    return build_all(render_tree(environments_snapshot()), tmp_path)


def test_eks_environment_installs_its_addons_with_argocd(built):
    objects = built["clusters/aws-production"]
    apps = {o["spec"]["source"]["chart"]: o for o in objects
            if o["kind"] == "Application" and o["metadata"]["name"].startswith("addon-")}
    # DNS01 TLS, EKS with EBS snapshots: no sealed-secrets (External Secrets instead).
    assert sorted(apps) == ["aws-ebs-csi-driver", "cert-manager", "external-secrets", "ingress-nginx", "reflector",
                            "snapshot-controller"]
    project = find(objects, "AppProject", "tesslate-addons-aws-production")["spec"]
    for chart, app in apps.items():
        source = app["spec"]["source"]
        assert EXACT_VERSION.match(source["targetRevision"]), f"{chart} is not pinned: {source['targetRevision']}"
        assert source["repoURL"].startswith("https://") and source["repoURL"] in project["sourceRepos"]
        assert app["spec"]["project"] == "tesslate-addons-aws-production"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
        assert "finalizers" not in app["metadata"], "disabling an add-on must not uninstall it"
    assert apps["ingress-nginx"]["spec"]["destination"]["namespace"] == "ingress-nginx"
    assert apps["cert-manager"]["spec"]["source"]["helm"]["valuesObject"] == {"crds": {"enabled": True}}
    ebs = apps["aws-ebs-csi-driver"]["spec"]["source"]["helm"]["valuesObject"]
    assert ebs["controller"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        "arn:aws:iam::123456789012:role/tesslate-ebs-csi-aws-production")


def test_minikube_environment_installs_its_addons_with_flux(built):
    objects = built["clusters/minikube"]
    releases = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HelmRelease"}
    # HTTP only, no snapshots, not EKS: the ingress controller and Sealed Secrets.
    assert sorted(releases) == ["ingress-nginx", "sealed-secrets"]
    repositories = {o["metadata"]["name"]: o["spec"]["url"] for o in objects if o["kind"] == "HelmRepository"}
    for release in releases.values():
        chart = release["spec"]["chart"]["spec"]
        assert EXACT_VERSION.match(chart["version"]), chart
        assert chart["sourceRef"]["kind"] == "HelmRepository" and chart["sourceRef"]["name"] in repositories
        assert release["spec"]["install"] == {"createNamespace": True, "crds": "CreateReplace"}
    sealed = releases["sealed-secrets"]["spec"]
    # kubeseal's defaults, so `kubeseal --fetch-cert` finds the controller.
    assert sealed["targetNamespace"] == "kube-system"
    assert sealed["values"] == {"fullnameOverride": "sealed-secrets-controller"}


def test_addon_objects_validate_against_the_crds(built):
    if not (django_settings.CRD_SCHEMA_DIR and Path(django_settings.CRD_SCHEMA_DIR).is_dir()):
        pytest.skip("CRD_SCHEMA_DIR is not a folder")
    for root in ("clusters/aws-production", "clusters/minikube"):
        assert_objects_validate(built[root])


def test_disabled_addons_are_left_out(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    environment = eks_environment_factory(name="beta", disabled_addons="ingress-nginx, aws-ebs-csi-driver",
                                          ingress_controller_namespace="traefik")
    assert environment.disabled_addons
    objects = build_all(render_tree(environments_snapshot(environment_ids=[environment.id])), tmp_path)[
        "clusters/beta"]
    charts = sorted(o["spec"]["source"]["chart"] for o in objects
                    if o["kind"] == "Application" and o["metadata"]["name"].startswith("addon-"))
    assert charts == ["cert-manager", "external-secrets", "reflector", "snapshot-controller"]


def test_an_environment_with_every_addon_disabled_renders_no_addon_file(settings):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    environment = environment_factory(name="bare", disabled_addons="ingress-nginx sealed-secrets")
    tree = render_tree(environments_snapshot(environment_ids=[environment.id]))
    assert "clusters/bare/addons.yaml" not in tree
    assert b"addons.yaml" not in tree["clusters/bare/kustomization.yaml"]


def test_unknown_addons_are_refused_on_the_field():
    assert_field_error(Environment(name="lab", app_domain="lab.example.com", disabled_addons="cert-manager, istio"),
                       "disabled_addons", "Unknown add-on istio")
    assert validators.parse_addon_names("reflector,cert-manager\nreflector") == ["cert-manager", "reflector"]

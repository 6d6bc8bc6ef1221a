"""Small factories for the portal's models (valid by default; override what a test varies)."""

import itertools

from deployments.models import Environment, NodeGroup, Secret
from deployments.services import secret_store_value
from projects.models import Container, Project

_seq = itertools.count(1)


def environment_factory(**overrides) -> Environment:
    n = next(_seq)
    fields = dict(name=f"env-{n}", kind=Environment.Kind.MINIKUBE, app_domain=f"env{n}.example.com")
    fields.update(overrides)
    environment = Environment(**fields)
    environment.full_clean()
    environment.save()
    return environment


def eks_environment_factory(**overrides) -> Environment:
    fields = dict(kind=Environment.Kind.EKS, tls_mode=Environment.TLSMode.CERT_MANAGER_DNS01,
                  acme_email="ops@example.com", storage_provisioner=Environment.StorageProvisioner.EBS_GP3,
                  image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com", image_tag="beta",
                  aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name="tesslate-test")
    fields.update(overrides)
    return environment_factory(**fields)


def node_group_factory(environment: Environment, **overrides) -> NodeGroup:
    fields = dict(environment=environment, name=f"ng-{next(_seq)}", instance_types="t3.large")
    fields.update(overrides)
    group = NodeGroup(**fields)
    group.full_clean()
    group.save()
    return group


def secret_factory(environment: Environment, value: str = "s3cr3t-value", **overrides) -> Secret:
    fields = dict(environment=environment, key=f"KEY_{next(_seq)}")
    fields.update(overrides)
    return secret_store_value(secret=Secret(**fields), value=value)


def project_factory(environment: Environment | None = None, containers=("frontend",), **overrides) -> Project:
    environment = environment or environment_factory()
    n = next(_seq)
    fields = dict(environment=environment, name=f"Project {n}", slug=f"project-{n}", owner=f"user-{n}")
    fields.update(overrides)
    project = Project(**fields)
    project.full_clean()
    project.save()
    for directory in containers:
        container_factory(project, directory=directory)
    return project


def container_factory(project: Project, **overrides) -> Container:
    fields = dict(project=project, directory="frontend", image="tesslate-devserver:latest", port=5173)
    fields.update(overrides)
    container = Container(**fields)
    container.full_clean()
    container.save()
    return container


def field_errors(instance) -> dict[str, list[str]]:
    """The field errors full_clean() raises for an instance that must be refused."""
    import pytest
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        instance.full_clean()
    return excinfo.value.message_dict


def assert_field_error(instance, field: str, fragment: str) -> None:
    errors = field_errors(instance)
    assert field in errors, errors
    assert any(fragment in message for message in errors[field]), errors[field]

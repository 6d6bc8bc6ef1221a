"""Commands that must not undo the admin's work or touch what is not theirs: load_demo never overwrites existing
rows, dumpdata works, the tests empty only their own Redis database."""

import json
import os
from io import StringIO

import pytest
import redis
from django.core.management import call_command

from deployments.models import Environment, NodeGroup, Secret
from projects.demo import demo_load, demo_project_id
from projects.models import Container, Project, RenderToken, ServiceCredential
from tests.environment import REDIS_OWNER_KEY, TEST_REDIS_URL_DEFAULT, redis_claim, redis_flush_own


@pytest.mark.django_db
def test_load_demo_again_keeps_the_admins_changes():
    call_command("load_demo", stdout=StringIO())
    production = Environment.objects.get(name="aws-production")
    assert production.backend_replicas == 2
    Environment.objects.filter(pk=production.pk).update(backend_replicas=4, image_tag="hotfix")
    NodeGroup.objects.filter(environment=production, name="spot").update(max_size=20)
    todo = Project.objects.get(id=demo_project_id("minikube", "todo-app"))
    Project.objects.filter(pk=todo.pk).update(volume_size="8Gi")
    Container.objects.filter(project_id=demo_project_id("minikube", "landing-page")).delete()
    secret = Secret.objects.get(environment=production, key="SECRET_KEY")

    out = StringIO()
    call_command("load_demo", stdout=out)

    production.refresh_from_db()
    assert (production.backend_replicas, production.image_tag) == (4, "hotfix")
    assert NodeGroup.objects.get(environment=production, name="spot").max_size == 20
    assert Project.objects.get(pk=todo.pk).volume_size == "8Gi"
    assert not Container.objects.filter(project_id=demo_project_id("minikube", "landing-page")).exists()
    assert Secret.objects.get(pk=secret.pk).ciphertext == secret.ciphertext
    assert "3 demo environment(s) already existed and were left unchanged" in out.getvalue()
    assert "0 environments" in out.getvalue()


@pytest.mark.django_db
def test_load_demo_creates_what_is_missing():
    Environment.objects.create(name="minikube", app_domain="dev.example.com")  # an admin's own minikube
    counts = demo_load()
    assert (counts["environments"], counts["environments_kept"]) == (2, 1)  # aws-production, single-server
    assert Environment.objects.get(name="minikube").app_domain == "dev.example.com"
    assert not Project.objects.filter(environment__name="minikube").exists()
    assert Project.objects.filter(environment__name="aws-production").count() == 3


@pytest.mark.django_db
def test_dumpdata_works():
    demo_load()
    out = StringIO()
    call_command("dumpdata", stdout=out)
    rows = json.loads(out.getvalue())
    models = {row["model"] for row in rows}
    assert {"deployments.environment", "deployments.secret", "projects.project", "projects.container"} <= models
    assert "django_rq.dashboard" not in models
    out = StringIO()
    call_command("dumpdata", "projects", stdout=out)
    assert len(json.loads(out.getvalue())) == (Project.objects.count() + Container.objects.count()
                                               + ServiceCredential.objects.count() + RenderToken.objects.count())
    assert RenderToken.objects.count() == Project.objects.count()  # one render token per project


def test_the_tests_redis_database_is_their_own():
    url = os.environ["REDIS_URL"]
    assert TEST_REDIS_URL_DEFAULT.endswith("/15")
    connection = redis.Redis.from_url(url)
    assert connection.exists(REDIS_OWNER_KEY)  # claimed when the session started
    redis_flush_own(connection)
    connection.set("someone-else:key", "1")
    connection.delete(REDIS_OWNER_KEY)
    try:
        assert "holds 1 key(s) that are not the tests'" in redis_claim(connection, url)
        with pytest.raises(RuntimeError, match="Refusing to flush"):
            redis_flush_own(connection)
        assert connection.get("someone-else:key") == b"1"
    finally:
        connection.delete("someone-else:key")
        assert redis_claim(connection, url) is None  # empty again: claimed
    assert connection.exists(REDIS_OWNER_KEY)

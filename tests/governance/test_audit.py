"""The audit trail: who changed which field when, secrets only by version, deletes kept, every change linked to the
run and commit that shipped it; the admin's audit page filters, searches and exports CSV within the user's grants."""

import csv
import io

import pytest
from django.urls import reverse

from deployments import changes, runs, services
from deployments.models import RenderRun, Secret
from governance import selectors
from governance.models import AUDITED_MODELS
from projects import services as project_services
from projects.models import Container, Project


def _execute(run_id: int) -> RenderRun:
    return runs.render_run_execute(run_id=run_id)


@pytest.mark.django_db
def test_a_minikube_change_reaches_its_commit_through_the_audit_trail(client, gitops, people, demo):
    operator = people["operator_minikube"]
    client.force_login(operator)
    project = Project.objects.get(slug="todo-app")
    with changes.change_batch(user=operator) as batch:
        project.name = "Todo app 2"
        project_services.project_save(project=project, user=operator)
    run = _execute(batch.request.run.pk)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS) and run.commit_sha

    entries = selectors.audit_entries(environment_ids=None, commit_sha=run.commit_sha)
    mine = [entry for entry in entries if entry.user == "operator_minikube"]
    assert [(entry.action, entry.object_label, entry.changes) for entry in mine] == [
        ("changed", "todo-app", (("name", "Todo app", "Todo app 2"),))]
    assert mine[0].run_id == run.pk and mine[0].environment_id == demo["minikube"].pk

    # The project's page links its history; the page lists the change with its commit; CSV has it too.
    page = client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    assert f"{reverse('admin:governance_audit')}?project={project.pk}" in page
    audit = client.get(reverse("admin:governance_audit"), {"project": str(project.pk)}).content.decode()
    assert "Todo app 2" in audit and run.commit_sha[:12] in audit
    response = client.get(reverse("admin:governance_audit"), {"sha": run.commit_sha[:8], "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert response["Content-Type"].startswith("text/csv")
    assert any(row["user"] == "operator_minikube" and "name: Todo app → Todo app 2" in row["changes"]
               and row["commit"] == run.commit_sha for row in rows)


@pytest.mark.django_db
def test_secret_history_shows_versions_never_values_and_deletes_keep_history(gitops, people, demo):
    admin = people["admin_minikube"]
    secret = Secret.objects.filter(environment=demo["minikube"]).order_by("pk").first()
    before = secret.version
    marker = "history-marker-7d1f0c"
    services.secret_set_value(secret=secret, value=marker, user=admin)
    history = Secret.history.model
    columns = {field.name for field in history._meta.get_fields()}
    assert not columns & {"ciphertext", "fingerprint", "sealed_value"}
    entries = selectors.audit_entries(environment_ids=None, model="secret")
    change = next(entry for entry in entries if entry.object_id == str(secret.pk) and entry.action == "changed")
    assert ("value", f"version {before}", f"version {before + 1}") in change.changes
    assert marker not in str(entries)
    for model in AUDITED_MODELS:
        for row in model.history.model.objects.values():
            assert marker not in str(row)

    container = Container.objects.filter(project__slug="landing-page").first()
    container_id = container.pk
    project_services.container_delete(container=container, user=people["root"])
    deleted = [entry for entry in selectors.audit_entries(environment_ids=None, model="container")
               if entry.action == "deleted"]
    assert deleted and deleted[0].object_id == str(container_id) and deleted[0].user == "root"
    assert deleted[0].environment_id == demo["minikube"].pk


@pytest.mark.django_db
def test_the_audit_page_filters_searches_and_stays_within_grants(client, gitops, people, demo):
    root, operator = people["root"], people["operator_minikube"]
    production = Project.objects.get(slug="crm-dashboard")
    production.owner = "user-zed"
    project_services.project_save(project=production, user=root)
    minikube = Project.objects.get(slug="landing-page")
    minikube.owner = "user-yan"
    project_services.project_save(project=minikube, user=operator)

    client.force_login(operator)
    page = client.get(reverse("admin:governance_audit")).content.decode()
    assert "user-yan" in page and "user-zed" not in page  # aws-production is not granted
    assert client.get(reverse("admin:governance_audit"), {"environment": demo["aws-production"].pk}).status_code == 403

    client.force_login(root)
    searched = client.get(reverse("admin:governance_audit"), {"q": "crm"}).content.decode()
    assert "user-zed" in searched and "user-yan" not in searched
    by_user = client.get(reverse("admin:governance_audit"), {"user": "operator_minikube"}).content.decode()
    assert "user-yan" in by_user and "user-zed" not in by_user
    assert "not shipped yet" in by_user  # no run committed it yet

    client.force_login(people["admin_no_grant"])
    assert client.get(reverse("admin:governance_audit")).status_code == 403

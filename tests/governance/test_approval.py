"""The two-person rule on a real bare remote: a protected environment's change waits with its diff, the author
cannot approve it, a second person can (the commit names both), a stale change is shown again, a rejection
commits nothing; and the audit trail leads from the commit to the change."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from deployments import changes, runs, services, tasks
from deployments.models import Environment, RenderRun
from governance import selectors
from governance import services as governance
from governance.models import ChangeRequest
from tests.deployments.runfixtures import queued_run


def _trailers(message: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in message.strip().splitlines() if ": " in line)


def _first_render(gitops) -> str:
    run = runs.render_run_execute(run_id=queued_run(environment_ids=None, user=None, reason="first").pk)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    return gitops.head()


def _change_production(user, **fields):
    production = Environment.objects.get(name="aws-production")
    for name, value in fields.items():
        setattr(production, name, value)
    with changes.change_batch(user=user) as batch:
        services.environment_save(environment=production, user=user)
    return batch.request


@pytest.mark.django_db
def test_a_protected_change_waits_is_approved_by_a_second_person_and_ships_with_both_names(gitops, people, demo):
    head = _first_render(gitops)
    author, approver = people["admin_all"], people["approver"]
    sneak = queued_run(environment_ids=[demo["aws-production"].pk], user=None, reason="queued before")
    runs_before = RenderRun.objects.count()

    request = _change_production(author, image_tag="v2.0.0")
    assert request.run is None and isinstance(request.held, ChangeRequest)
    change = ChangeRequest.objects.get()
    assert change.status == ChangeRequest.Status.PENDING and change.author == author
    assert "v2.0.0" in change.diff and change.diff_sha256 and change.files_changed >= 1
    assert RenderRun.objects.count() == runs_before and gitops.head() == head  # saved, not shipped

    # A manual render or a run queued earlier cannot ship it either.
    assert runs.render_run_request(environment_ids=[demo["aws-production"].pk], user=people["root"],
                                   reason="sneak", absorb=False).run is None
    sneak = runs.render_run_execute(run_id=sneak.pk)
    assert sneak.status == RenderRun.Status.FAILED and sneak.error_kind == RenderRun.ErrorKind.REFUSED
    assert gitops.head() == head
    change = ChangeRequest.objects.get(status=ChangeRequest.Status.PENDING)

    # The author cannot approve; an approver without a grant on aws-production cannot either.
    with pytest.raises(PermissionDenied):
        governance.change_request_approve(change_request=change, user=author, diff_sha256=change.diff_sha256)
    with pytest.raises(PermissionDenied):
        governance.change_request_approve(change_request=change, user=people["approver_minikube"],
                                          diff_sha256=change.diff_sha256)
    result = governance.change_request_approve(change_request=change, user=approver, comment="Looks right",
                                               diff_sha256=change.diff_sha256)
    run = result.run
    assert run is not None and run.triggered_by == author
    assert tasks.render_run_job(run.pk) in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS)
    run.refresh_from_db()
    assert run.commit_sha == gitops.head() != head
    assert f"Change #{change.pk} by admin_all approved by approver: Looks right" in run.log
    trailers = _trailers(gitops.message())
    assert trailers["Changed-By"] == "admin_all" and trailers["Approved-By"] == "approver"
    assert trailers["Change-Request"] == f"#{change.pk}"
    assert "v2.0.0" in gitops.log_patch()

    # The audit trail: from the commit to the field, who and when.
    entries = selectors.audit_entries(environment_ids=None, commit_sha=run.commit_sha[:10])
    tag = [entry for entry in entries if any(field == "image_tag" and new == "v2.0.0"
                                             for field, _, new in entry.changes)]
    assert tag and tag[0].user == "admin_all" and tag[0].run_id == run.pk and tag[0].commit_sha == run.commit_sha
    assert not selectors.audit_entries(environment_ids=None, commit_sha="0" * 12)


@pytest.mark.django_db
def test_a_stale_change_is_shown_again_before_approval(gitops, people, demo):
    _first_render(gitops)
    _change_production(people["admin_all"], image_tag="v3.0.0")
    change = ChangeRequest.objects.get(status=ChangeRequest.Status.PENDING)
    shown = change.diff_sha256
    # The model moves on behind the request's back (a direct write, a data fix).
    Environment.objects.filter(name="aws-production").update(backend_replicas=4)
    with pytest.raises(governance.ChangeRequestStale):
        governance.change_request_approve(change_request=change, user=people["approver"], diff_sha256=shown)
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING and change.diff_sha256 != shown
    assert "replicas: 4" in change.diff
    # Reviewed again: the approval of the new diff goes through.
    result = governance.change_request_approve(change_request=change, user=people["approver"],
                                               diff_sha256=change.diff_sha256)
    assert result.run is not None

    # A newer change supersedes a pending one, which then cannot be approved.
    _change_production(people["admin_all"], image_tag="v3.1.0")
    first = ChangeRequest.objects.get(status=ChangeRequest.Status.PENDING)
    _change_production(people["root"], image_tag="v3.2.0")
    first.refresh_from_db()
    assert first.status == ChangeRequest.Status.SUPERSEDED and first.superseded_by is not None
    newest = first.superseded_by
    assert set(newest.contributors.values_list("username", flat=True)) == {"admin_all", "root"}
    with pytest.raises(ValidationError):
        governance.change_request_approve(change_request=first, user=people["approver"],
                                          diff_sha256=first.diff_sha256)


@pytest.mark.django_db
def test_a_rejection_commits_nothing_and_keeps_blocking(gitops, people, demo):
    head = _first_render(gitops)
    _change_production(people["admin_all"], image_tag="v4.0.0")
    change = ChangeRequest.objects.get(status=ChangeRequest.Status.PENDING)
    with pytest.raises(ValidationError):
        governance.change_request_reject(change_request=change, user=people["approver"], comment="  ")
    with pytest.raises(PermissionDenied):
        governance.change_request_reject(change_request=change, user=people["admin_all"], comment="mine")
    governance.change_request_reject(change_request=change, user=people["approver"], comment="Wrong tag")
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.REJECTED and change.approver == people["approver"]
    assert change.run is None and gitops.head() == head
    assert not RenderRun.objects.filter(reason__contains="v4.0.0").exists()
    # The rejected change is still in the model: a later render of the environment waits for approval again.
    held = runs.render_run_request(environment_ids=[demo["aws-production"].pk], user=None, reason="system",
                                   absorb=False)
    assert held.run is None and held.held.status == ChangeRequest.Status.PENDING
    assert gitops.head() == head


@pytest.mark.django_db
def test_the_admin_page_shows_the_diff_and_only_a_second_person_decides(client, gitops, people, demo):
    _first_render(gitops)
    _change_production(people["admin_all"], image_tag="v5.0.0")
    change = ChangeRequest.objects.get(status=ChangeRequest.Status.PENDING)
    url = reverse("admin:governance_changerequest_change", args=[change.pk])

    client.force_login(people["admin_all"])
    page = client.get(url).content.decode()
    assert "v5.0.0" in page and 'value="approve"' not in page  # the author sees it but cannot decide
    client.post(url, {"decision": "approve", "diff_sha256": change.diff_sha256})  # forged
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING

    client.force_login(people["operator_minikube"])  # no grant on aws-production: not even visible
    assert client.get(url).status_code in (302, 403, 404)
    assert change not in client.get(reverse("admin:governance_changerequest_changelist")).context["cl"].result_list

    client.force_login(people["approver"])
    page = client.get(url).content.decode()
    assert 'value="approve"' in page and '<span class="diff-add">' in page
    response = client.post(url, {"decision": "approve", "diff_sha256": change.diff_sha256, "comment": "ok"},
                           follow=True)
    assert response.status_code == 200
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPROVED and change.run is not None and change.comment == "ok"


@pytest.mark.django_db
def test_removing_a_protected_environment_waits_and_an_open_one_does_not(gitops, people, demo):
    from tests.factories import environment_factory

    author = people["admin_all"]
    open_one = environment_factory()
    with changes.change_batch(user=author) as batch:
        services.environment_delete(environment=open_one, user=author)
    assert batch.request.run is not None  # every environment renders; aws-production holds nothing unapproved

    doomed = environment_factory(protected=True)  # made by the system: nothing unapproved yet
    with changes.change_batch(user=author) as batch:
        services.environment_delete(environment=doomed, user=author)
    held = batch.request
    assert held.run is None and held.held.all_environments and held.held.author == author
    assert held.held.allow_deletions and held.held.status == ChangeRequest.Status.PENDING

    # Rejected: the removal is in the model but not in git, so any render of every environment waits again.
    governance.change_request_reject(change_request=held.held, user=people["approver"], comment="keep it")
    another = environment_factory()
    with changes.change_batch(user=author) as batch:
        services.environment_delete(environment=another, user=author)
    assert batch.request.run is None and batch.request.held.status == ChangeRequest.Status.PENDING


@pytest.mark.django_db
def test_system_changes_of_a_protected_environment_ship_named_and_approved_ones_do_not(gitops, people, demo):
    """A command's change (user=None) is not held, but its commit and its run's log name the protected
    environments whose changes nobody approved; an approved change's commit names its approver instead."""
    _first_render(gitops)  # the demo was loaded by the system: aws-production's creation was never approved
    assert _trailers(gitops.message())["Unapproved-System-Change"] == "aws-production"

    production = Environment.objects.get(name="aws-production")
    production.backend_replicas = 3
    with changes.change_batch(user=None) as batch:
        services.environment_save(environment=production, user=None)
    assert batch.request.held is None and batch.request.run is not None
    run = runs.render_run_execute(run_id=batch.request.run.pk)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    trailers = _trailers(gitops.message())
    assert trailers["Changed-By"] == "system" and trailers["Unapproved-System-Change"] == "aws-production"
    assert "Approved-By" not in trailers and "Unapproved-System-Change: aws-production" in run.log

    # An open environment's system change names nothing; a person's approved change carries Approved-By only.
    change = _change_production(people["admin_all"], image_tag="v6.0.0").held
    result = governance.change_request_approve(change_request=change, user=people["approver"],
                                               diff_sha256=change.diff_sha256)
    assert tasks.render_run_job(result.run.pk) in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS)
    trailers = _trailers(gitops.message())
    assert trailers["Approved-By"] == "approver" and "Unapproved-System-Change" not in trailers
    minikube = Environment.objects.get(name="minikube")
    minikube.backend_replicas = 2
    with changes.change_batch(user=None) as batch:
        services.environment_save(environment=minikube, user=None)
    open_run = runs.render_run_execute(run_id=batch.request.run.pk)
    assert open_run.commit_sha and open_run.commit_sha == gitops.head()
    assert "Unapproved-System-Change" not in _trailers(gitops.message())


@pytest.mark.django_db
def test_the_dashboard_approvals_link_lists_requests_of_that_environment_and_of_every_environment(client, gitops,
                                                                                                 people, demo):
    """A pending removal renders every environment: each card counts it, and the card's link lists it beside the
    requests naming that environment (and not another environment's)."""
    from dashboard.templatetags.dashboard import environment_cards
    from tests.factories import environment_factory

    _first_render(gitops)
    author = people["admin_all"]
    named = _change_production(author, image_tag="v3.0.0").held
    doomed = environment_factory(protected=True)
    with changes.change_batch(user=author) as batch:
        services.environment_delete(environment=doomed, user=author)
    everywhere = batch.request.held
    assert everywhere.all_environments and named.environments.count() == 1

    client.force_login(people["root"])
    links = {row["card"].name: row["approvals_url"]
             for row in environment_cards({"request": type("R", (), {"user": people["root"]})()})["rows"]}
    listed = {}
    for name, url in links.items():
        assert url, f"{name}'s card has pending changes (the removal covers it) but no approvals link"
        response = client.get(url)
        assert response.status_code == 200
        listed[name] = set(response.context["cl"].result_list)
    named.refresh_from_db()
    assert named.status == ChangeRequest.Status.SUPERSEDED  # the removal's render ships it too
    assert all(rows == {everywhere} for rows in listed.values()) and len(listed) >= 2
    named_only = ChangeRequest.objects.create(environment_names="aws-production", author=author, reason="named")
    named_only.environments.set([demo["aws-production"]])
    production = client.get(links["aws-production"]).context["cl"].result_list
    assert set(production) == {named_only, everywhere}
    other = next(url for name, url in links.items() if name != "aws-production")
    assert set(client.get(other).context["cl"].result_list) == {everywhere}
    assert client.get(reverse("admin:governance_changerequest_changelist") + "?covers=x").context[
        "cl"].result_list.count() == 0

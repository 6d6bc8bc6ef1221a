"""Scheduling that degrades gracefully (DOMAIN.md "Nodes and cost"): project pods *prefer* the SPOT node group and
each other's node, and still fit on an on-demand node when no spot capacity is left.

A small model of the scheduler's hard checks (nodeSelector, required node affinity, required pod affinity,
NoSchedule/NoExecute taints) decides where each rendered pod may run.
"""

import pytest

from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_load, demo_project_id
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all

pytestmark = pytest.mark.django_db

SPOT = {"name": "spot-1", "labels": {"tesslate.io/workload-type": "user-project", "kubernetes.io/hostname": "spot-1"},
        "taints": [{"key": "tesslate.io/spot", "value": "true", "effect": "PreferNoSchedule"}]}
ON_DEMAND = {"name": "primary-1", "labels": {"kubernetes.io/hostname": "primary-1"}, "taints": []}
# The same group if the operator hardens its taint: pods tolerate exactly the configured taints.
STRICT_SPOT = {**SPOT, "name": "spot-2", "taints": [{"key": "tesslate.io/spot", "value": "true",
                                                      "effect": "NoSchedule"}]}


def _matches_expression(labels: dict, expression: dict) -> bool:
    value, operator = labels.get(expression["key"]), expression["operator"]
    if operator == "In":
        return value in expression["values"]
    if operator == "NotIn":
        return value not in expression["values"]
    if operator == "Exists":
        return expression["key"] in labels
    if operator == "DoesNotExist":
        return expression["key"] not in labels
    raise AssertionError(f"operator {operator} not modelled")


def _tolerated(taint: dict, tolerations: list[dict]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, taint["effect"]) or toleration.get("key") != taint["key"]:
            continue
        if toleration.get("operator", "Equal") == "Exists" or toleration.get("value") == taint["value"]:
            return True
    return False


def feasible(pod_spec: dict, node: dict, running_on_node: list[dict]) -> bool:
    """The scheduler's filters that can leave a pod Pending; preferences never make a node infeasible."""
    if not pod_spec.get("nodeSelector", {}).items() <= node["labels"].items():
        return False
    affinity = pod_spec.get("affinity", {})
    required_node = affinity.get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required_node and not any(all(_matches_expression(node["labels"], e) for e in term.get("matchExpressions", []))
                                 for term in required_node["nodeSelectorTerms"]):
        return False
    for term in affinity.get("podAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", []):
        wanted = term["labelSelector"]["matchLabels"].items()
        if not any(wanted <= pod["labels"].items() for pod in running_on_node):
            return False
    return all(taint["effect"] == "PreferNoSchedule" or _tolerated(taint, pod_spec.get("tolerations", []))
               for taint in node["taints"])


@pytest.fixture
def crm_pods(settings, tmp_path) -> dict[str, dict]:
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    built = build_all(render_tree(environments_snapshot()), tmp_path)
    objects = built[f"environments/aws-production/projects/proj-{demo_project_id('aws-production', 'crm-dashboard')}"]
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objects if o["kind"] == "Deployment"}


def test_without_spot_capacity_every_project_pod_still_fits_an_on_demand_node(crm_pods):
    assert sorted(crm_pods) == ["dev-backend", "dev-frontend", "file-manager", "svc-db"]
    for name, template in crm_pods.items():
        # First pod of the project: nothing runs yet, so a required pod affinity could never be met.
        assert feasible(template["spec"], ON_DEMAND, running_on_node=[]), name


def test_project_pods_prefer_spot_nodes_and_tolerate_their_taints(crm_pods):
    for name, template in crm_pods.items():
        spec = template["spec"]
        assert feasible(spec, SPOT, []), name
        assert not feasible(spec, STRICT_SPOT, []), "the model must refuse an untolerated NoSchedule taint"
        preferred = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert len(preferred) == 1 and preferred[0]["weight"] > 0
        assert all(_matches_expression(SPOT["labels"], e) for e in preferred[0]["preference"]["matchExpressions"])
        assert not any(_matches_expression(ON_DEMAND["labels"], e)
                       for e in preferred[0]["preference"]["matchExpressions"])


def test_project_pods_prefer_one_node_for_the_read_write_once_volume(crm_pods):
    project_id = str(demo_project_id("aws-production", "crm-dashboard"))
    for name, template in crm_pods.items():
        pod_affinity = template["spec"]["affinity"]["podAffinity"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod_affinity, name
        (term,) = pod_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["weight"] == 100
        assert term["podAffinityTerm"] == {"labelSelector": {"matchLabels": {"tesslate.io/project-id": project_id}},
                                           "topologyKey": "kubernetes.io/hostname"}
        # The term selects the project's own pods (including this one), so they gravitate to one node.
        assert template["metadata"]["labels"]["tesslate.io/project-id"] == project_id

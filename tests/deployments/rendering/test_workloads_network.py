"""Network rules (DOMAIN.md "A user project"): a small NetworkPolicy evaluator runs a table of flows against the
policies the demo renders (built with the real `kubectl kustomize`).

The evaluator follows the networking.k8s.io/v1 semantics: a pod selected by no policy of a direction is open in
that direction; a selected pod admits a connection when any rule of any selecting policy matches the peer and the
port; a connection needs both the source's egress and the destination's ingress. How `ipBlock` treats pod IPs is
left to the network plugin (Calico matches them, Cilium does not), so every flow is checked under both readings.
"""

import ipaddress
from dataclasses import dataclass, field

import pytest

from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_load, demo_project_id
from tests.deployments.rendering.test_rendering import SOURCE_URL, build_all, find
from tests.factories import environment_factory, project_factory

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict = field(hash=False)
    ip: str


def _matches(selector: dict, labels: dict) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "Exists" and key not in labels or operator == "DoesNotExist" and key in labels:
            return False
        if operator == "In" and labels.get(key) not in values or operator == "NotIn" and labels.get(key) in values:
            return False
    return True


class Cluster:
    def __init__(self, namespaces: dict[str, dict], policies: list[dict], ipblock_matches_pods: bool):
        # Kubernetes labels every namespace with its name.
        self.namespaces = {name: {**labels, "kubernetes.io/metadata.name": name} for name, labels in namespaces.items()}
        self.policies = policies
        self.ipblock_matches_pods = ipblock_matches_pods

    def _peer_matches(self, peer: dict, policy_namespace: str, other) -> bool:
        if "ipBlock" in peer:
            if isinstance(other, Pod) and not self.ipblock_matches_pods:
                return False
            ip = ipaddress.ip_address(other.ip if isinstance(other, Pod) else other)
            block = peer["ipBlock"]
            return ip in ipaddress.ip_network(block["cidr"]) and not any(
                ip in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        if not isinstance(other, Pod):
            return False  # pod and namespace selectors only select pods
        if "namespaceSelector" in peer:
            if not _matches(peer["namespaceSelector"], self.namespaces[other.namespace]):
                return False
        elif other.namespace != policy_namespace:
            return False
        return _matches(peer.get("podSelector", {}), other.labels)

    @staticmethod
    def _port_matches(rule: dict, protocol: str, port: int) -> bool:
        ports = rule.get("ports")
        return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)

    def _direction_allows(self, pod: Pod, direction: str, other, protocol: str, port: int) -> bool:
        selecting = [p for p in self.policies if p["metadata"]["namespace"] == pod.namespace
                     and direction in p["spec"].get("policyTypes", ["Ingress"])
                     and _matches(p["spec"]["podSelector"], pod.labels)]
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in selecting:
            for rule in policy["spec"].get(key, []):
                peers = rule.get(peers_key)
                peer_ok = not peers or any(self._peer_matches(peer, pod.namespace, other) for peer in peers)
                if peer_ok and self._port_matches(rule, protocol, port):
                    return True
        return False

    def allowed(self, source, destination, protocol: str, port: int) -> bool:
        """source / destination: a Pod, or an IP address text for something outside the cluster."""
        egress = not isinstance(source, Pod) or self._direction_allows(source, "Egress", destination, protocol, port)
        ingress = (not isinstance(destination, Pod)
                   or self._direction_allows(destination, "Ingress", source, protocol, port))
        return egress and ingress


@pytest.fixture
def demo_policies(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    demo_load()
    built = build_all(render_tree(environments_snapshot()), tmp_path)
    crm = f"proj-{demo_project_id('aws-production', 'crm-dashboard')}"
    portfolio = f"proj-{demo_project_id('aws-production', 'portfolio')}"
    objects = (built["environments/aws-production/platform"] + built["environments/aws-production/projects"])
    namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in objects if o["kind"] == "Namespace"}
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {}
    for namespace, short in ((crm, "crm"), (portfolio, "portfolio")):
        for o in objects:
            if o["kind"] == "Deployment" and o["metadata"]["namespace"] == namespace:
                pods[f"{short}/{o['metadata']['name']}"] = Pod(namespace, o["spec"]["template"]["metadata"]["labels"],
                                                              f"10.1.{len(pods)}.1")
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["namespace"] == "tesslate":
            pods[f"tesslate/{o['metadata']['name']}"] = Pod("tesslate", o["spec"]["template"]["metadata"]["labels"],
                                                           f"10.2.{len(pods)}.1")
    namespaces.update({"kube-system": {}, "ingress-nginx": {}, "monitoring": {}})
    pods["dns"] = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.3.0.10")
    pods["ingress"] = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, "10.3.0.20")
    pods["stranger"] = Pod("monitoring", {"app": "scraper"}, "10.3.0.30")
    return namespaces, policies, pods


# (source, destination, protocol, port, allowed); names are pods of the fixture, anything else an outside IP.
FLOWS = [
    ("crm/dev-backend", "crm/svc-db", "TCP", 5432, True),
    ("crm/dev-frontend", "crm/dev-backend", "TCP", 8000, True),
    ("crm/file-manager", "crm/dev-frontend", "TCP", 5173, True),
    ("crm/dev-backend", "portfolio/dev-frontend", "TCP", 5173, False),
    ("crm/dev-backend", "portfolio/dev-frontend", "TCP", 443, False),
    ("crm/dev-backend", "portfolio/dev-frontend", "TCP", 80, False),
    ("portfolio/dev-frontend", "crm/svc-db", "TCP", 5432, False),
    ("crm/dev-backend", "dns", "UDP", 53, True),
    ("crm/dev-backend", "dns", "TCP", 53, True),
    ("crm/dev-backend", "8.8.8.8", "UDP", 53, False),
    ("crm/dev-backend", "140.82.112.3", "TCP", 443, True),
    ("crm/dev-frontend", "104.16.0.1", "TCP", 80, True),
    ("crm/dev-backend", "169.254.169.254", "TCP", 80, False),
    ("crm/dev-backend", "169.254.169.254", "TCP", 443, False),
    ("crm/dev-backend", "10.0.12.7", "TCP", 5432, False),
    ("ingress", "crm/dev-frontend", "TCP", 5173, True),
    ("tesslate/tesslate-backend", "crm/dev-frontend", "TCP", 5173, True),
    ("stranger", "crm/dev-frontend", "TCP", 5173, False),
    ("crm/dev-backend", "tesslate/tesslate-backend", "TCP", 8000, False),
    ("ingress", "tesslate/tesslate-backend", "TCP", 8000, True),
    ("ingress", "tesslate/tesslate-frontend", "TCP", 80, True),
    ("stranger", "tesslate/tesslate-backend", "TCP", 8000, False),
    ("tesslate/tesslate-worker", "tesslate/tesslate-backend", "TCP", 8000, True),
    ("tesslate/tesslate-backend", "dns", "UDP", 53, True),
    ("tesslate/tesslate-backend", "140.82.112.3", "TCP", 443, True),
    ("tesslate/tesslate-backend", "10.0.12.7", "TCP", 5432, True),
    ("tesslate/tesslate-backend", "169.254.169.254", "TCP", 80, False),
    ("tesslate/tesslate-worker", "169.254.169.254", "TCP", 80, False),
    ("tesslate/tesslate-backend", "8.8.8.8", "UDP", 53, False),
    ("tesslate/tesslate-backend", "stranger", "TCP", 9090, False),
]


@pytest.mark.parametrize("ipblock_matches_pods", [False, True], ids=["ipblock-external-only", "ipblock-pod-ips"])
def test_flow_table(demo_policies, ipblock_matches_pods):
    namespaces, policies, pods = demo_policies
    cluster = Cluster(namespaces, policies, ipblock_matches_pods)
    wrong = []
    for source, destination, protocol, port, expected in FLOWS:
        got = cluster.allowed(pods.get(source, source), pods.get(destination, destination), protocol, port)
        if got != expected:
            wrong.append(f"{source} -> {destination} {protocol}/{port}: {'allowed' if got else 'denied'}")
    assert not wrong, wrong


def test_the_evaluator_is_not_permissive_by_accident(demo_policies):
    """Without the platform's allow-lists its default-deny shuts everything; without any policy all is open."""
    namespaces, policies, pods = demo_policies
    deny_only = [p for p in policies
                 if p["metadata"]["namespace"] != "tesslate" or p["metadata"]["name"] == "default-deny"]
    cluster = Cluster(namespaces, deny_only, ipblock_matches_pods=False)
    assert not cluster.allowed(pods["ingress"], pods["tesslate/tesslate-backend"], "TCP", 8000)
    assert not cluster.allowed(pods["tesslate/tesslate-backend"], pods["dns"], "UDP", 53)
    open_cluster = Cluster(namespaces, [], ipblock_matches_pods=False)
    assert open_cluster.allowed(pods["crm/dev-backend"], pods["portfolio/dev-frontend"], "TCP", 5173)


def test_ingress_comes_from_the_environments_ingress_controller_namespace(settings, tmp_path):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    environment = environment_factory(name="lab", ingress_class="traefik", ingress_controller_namespace="traefik")
    project = project_factory(environment, containers=("web",))
    built = build_all(render_tree(environments_snapshot(environment_ids=[environment.id])), tmp_path)
    policy = find(built[f"environments/lab/projects/proj-{project.id}"], "NetworkPolicy", "project-isolation")
    namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for peer in policy["spec"]["ingress"][0]["from"] if "namespaceSelector" in peer]
    assert namespaces == ["traefik", "tesslate"]
    platform = find(built["environments/lab/platform"], "NetworkPolicy", "allow-ingress")
    assert platform["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "traefik"}

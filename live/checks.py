"""The live view's comparisons and the troubleshooting diagnostics: pure functions over plain data.

Inputs: the cluster's state (``clients.live.ClusterState``) and what the model expects (``Expectations``); output:
rows and ``Verdict``s with the guide's fix. No database, no clock (``now`` is passed in).
Sources: the operator guide's "Troubleshooting" list; DOMAIN.md (labels, names, node groups, the namespace-reaper).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from clients.eks import EksNodeGroup
from clients.live import ClusterState, GitOpsApp

# A backend container that restarted this often is "restarting" (CrashLoopBackOff starts after a few).
RESTART_THRESHOLD = 3
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName")
RATE_LIMIT_MARKERS = ("rate limit", "ratelimit", "too many certificates", "ratelimited")
BACKEND_LABEL = ("app", "tesslate-backend")
PLATFORM_NAMESPACE = "tesslate"


@dataclass(frozen=True)
class NodeGroupModel:
    name: str
    capacity_type: str
    instance_types: tuple[str, ...]
    min_size: int
    desired_size: int
    max_size: int
    labels: tuple[tuple[str, str], ...]
    taints: tuple[tuple[str, str, str], ...]
    disk_size_gb: int = 0


@dataclass(frozen=True)
class ProjectModel:
    id: str
    slug: str
    namespace: str
    state: str
    services: tuple[tuple[str, str], ...]  # (Service name dev-{dir}, host) of the containers with an Ingress
    # Has a folder in git, so a namespace (domain.project_is_rendered: also hibernating projects and projects
    # stopped by a Minikube hibernation); None: active projects only.
    rendered: bool | None = None

    @property
    def expects_namespace(self) -> bool:
        return self.state == "active" if self.rendered is None else self.rendered


@dataclass(frozen=True)
class Expectations:
    environment: str
    gitops_tool: str  # argocd | flux
    node_groups: tuple[NodeGroupModel, ...]
    projects: tuple[ProjectModel, ...]
    last_commit: str  # the portal's latest commit in the GitOps repository ("" if none)


@dataclass(frozen=True)
class NodeGroupRow:
    name: str
    modeled: bool
    desired: str  # "2 (1–5)" or "-" when not modeled
    nodes: int
    ready: int
    instance_types: tuple[str, ...]
    capacity_types: tuple[str, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class EksNodeGroupRow:
    """A node group as the EKS API configures it, against the model."""

    name: str
    modeled: bool
    status: str
    scaling: str  # "desired (min–max)" in EKS
    problems: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceRow:
    namespace: str
    project: str  # slug, "" when the model does not know it
    state: str  # the model's state, or "-"
    verdict: str  # ok | not-in-model | missing-in-cluster | terminating


@dataclass(frozen=True)
class AppRow:
    kind: str
    name: str
    sync_status: str
    health_status: str
    revision: str
    at_last_commit: bool | None  # None: nothing to compare (no commit yet, or the app is missing)
    message: str


@dataclass(frozen=True)
class Verdict:
    check: str  # certificate | image_pull | project_503 | namespace_terminating | backend
    ok: bool
    subject: str
    detail: str
    fix: str = ""
    project_id: str = ""


@dataclass(frozen=True)
class LiveReport:
    node_groups: tuple[NodeGroupRow, ...]
    namespaces: tuple[NamespaceRow, ...]
    apps: tuple[AppRow, ...]
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = field(default=())
    eks_node_groups: tuple[EksNodeGroupRow, ...] = field(default=())


CHECK_TITLES = {
    "certificate": "Certificates not Ready",
    "image_pull": "ImagePullBackOff / ErrImagePull",
    "project_503": "503 on a project URL (Service without ready endpoints)",
    "namespace_terminating": "Namespaces stuck in Terminating",
    "backend": "Backend pods restarting or not Ready",
}


def compare_nodes(expect: Expectations, state: ClusterState) -> list[NodeGroupRow]:
    """Modeled node groups against the nodes (label eks.amazonaws.com/nodegroup): count, types, labels, taints."""
    by_group: dict[str, list] = {}
    for node in state.nodes:
        by_group.setdefault(node.node_group, []).append(node)
    rows = []
    for group in expect.node_groups:
        nodes = by_group.pop(group.name, [])
        problems = []
        if not group.min_size <= len(nodes) <= group.max_size:
            problems.append(f"{len(nodes)} nodes, outside {group.min_size}–{group.max_size}")
        elif len(nodes) != group.desired_size:
            problems.append(f"{len(nodes)} nodes, desired {group.desired_size}")
        types = sorted({n.instance_type for n in nodes})
        foreign = [t for t in types if t not in group.instance_types]
        if foreign:
            problems.append(f"instance types not modeled: {', '.join(foreign)}")
        capacities = sorted({n.capacity_type for n in nodes})
        if nodes and capacities != [group.capacity_type]:
            problems.append(f"capacity type {', '.join(capacities) or 'unknown'}, modeled {group.capacity_type}")
        for key, value in group.labels:
            missing = [n.name for n in nodes if dict(n.labels).get(key) != value]
            if missing:
                problems.append(f"label {key}={value} missing on {', '.join(missing)}")
        for taint in group.taints:
            missing = [n.name for n in nodes if taint not in n.taints]
            if missing:
                problems.append(f"taint {taint[0]}={taint[1]}:{taint[2]} missing on {', '.join(missing)}")
        rows.append(NodeGroupRow(group.name, True, f"{group.desired_size} ({group.min_size}–{group.max_size})",
                                 len(nodes), sum(n.ready for n in nodes), tuple(types), tuple(capacities),
                                 tuple(problems)))
    for name, nodes in sorted(by_group.items()):
        rows.append(NodeGroupRow(name or "(no node group label)", False, "-", len(nodes), sum(n.ready for n in nodes),
                                 tuple(sorted({n.instance_type for n in nodes})),
                                 tuple(sorted({n.capacity_type for n in nodes})),
                                 ("not in the model",)))
    return rows


def compare_eks_node_groups(expect: Expectations, groups: tuple[EksNodeGroup, ...]) -> list[EksNodeGroupRow]:
    """The model's node groups against the EKS API's: scaling, instance types, capacity type, disk, labels, taints
    (what Terraform or eksctl configured may drift from what the portal models)."""
    actual = {g.name: g for g in groups}
    rows = []
    for model in expect.node_groups:
        eks = actual.pop(model.name, None)
        if eks is None:
            rows.append(EksNodeGroupRow(model.name, True, "missing", "-", ("not in the EKS cluster",)))
            continue
        problems = []
        if (eks.min_size, eks.desired_size, eks.max_size) != (model.min_size, model.desired_size, model.max_size):
            problems.append(f"scaling {eks.desired_size} ({eks.min_size}–{eks.max_size}) in EKS, modeled "
                            f"{model.desired_size} ({model.min_size}–{model.max_size})")
        if set(eks.instance_types) != set(model.instance_types):
            problems.append(f"instance types {', '.join(eks.instance_types)} in EKS, modeled "
                            f"{', '.join(model.instance_types)}")
        if eks.capacity_type != model.capacity_type:
            problems.append(f"capacity type {eks.capacity_type} in EKS, modeled {model.capacity_type}")
        if model.disk_size_gb and eks.disk_size and eks.disk_size != model.disk_size_gb:
            problems.append(f"disk {eks.disk_size} GB in EKS, modeled {model.disk_size_gb} GB")
        if set(eks.labels) != set(model.labels):
            problems.append("labels differ: EKS " + (", ".join(f"{k}={v}" for k, v in eks.labels) or "none")
                            + "; model " + (", ".join(f"{k}={v}" for k, v in model.labels) or "none"))
        if set(eks.taints) != set(model.taints):
            problems.append("taints differ: EKS " + (", ".join(f"{k}={v}:{e}" for k, v, e in eks.taints) or "none")
                            + "; model " + (", ".join(f"{k}={v}:{e}" for k, v, e in model.taints) or "none"))
        if eks.status != "ACTIVE":
            problems.append(f"status {eks.status}")
        rows.append(EksNodeGroupRow(model.name, True, eks.status,
                                    f"{eks.desired_size} ({eks.min_size}–{eks.max_size})", tuple(problems)))
    for name, eks in sorted(actual.items()):
        rows.append(EksNodeGroupRow(name, False, eks.status, f"{eks.desired_size} ({eks.min_size}–{eks.max_size})",
                                    ("not in the model",)))
    return rows


def compare_namespaces(expect: Expectations, state: ClusterState) -> list[NamespaceRow]:
    """proj-* namespaces: in the cluster but not active in the model, and active in the model but absent."""
    cluster = {ns.name: ns for ns in state.namespaces if ns.name.startswith("proj-")}
    projects = {p.namespace: p for p in expect.projects}
    rows = []
    for name in sorted(set(cluster) | {p.namespace for p in expect.projects if p.expects_namespace}):
        project = projects.get(name)
        ns = cluster.get(name)
        if ns is None:
            verdict = "missing-in-cluster"
        elif ns.deletion_timestamp is not None or ns.phase == "Terminating":
            verdict = "terminating"
        elif project is None or not project.expects_namespace:
            verdict = "not-in-model"
        else:
            verdict = "ok"
        rows.append(NamespaceRow(name, project.slug if project else "", project.state if project else "-", verdict))
    return rows


def _apps_for(expect: Expectations, state: ClusterState) -> tuple[list[GitOpsApp], list[str], str]:
    env = expect.environment
    if expect.gitops_tool == "flux":
        expected = [f"tesslate-platform-{env}", f"tesslate-projects-{env}"]
        if state.kustomizations is None:
            return [], expected, "Flux's Kustomization API is not served by this cluster."
        return [k for k in state.kustomizations if k.name in expected], expected, ""
    expected = [f"tesslate-platform-{env}"] + [f"{env}-{p.namespace}" for p in expect.projects if p.expects_namespace]
    if state.applications is None:
        return [], expected, "Argo CD's Application API is not served by this cluster."
    return [a for a in state.applications if a.project == f"tesslate-{env}"], expected, ""


def gitops_rows(expect: Expectations, state: ClusterState) -> tuple[list[AppRow], list[str]]:
    """The environment's Argo CD Applications (or Flux Kustomizations): sync, health, and whether they run the
    portal's latest commit (Argo CD follows the branch head, so every app should reach the newest commit)."""
    apps, expected, note = _apps_for(expect, state)
    rows = []
    for app in sorted(apps, key=lambda a: a.name):
        at_commit = (expect.last_commit in app.revision) if expect.last_commit and app.revision else None
        rows.append(AppRow(app.kind, app.name, app.sync_status, app.health_status, app.revision, at_commit,
                           app.message))
    present = {a.name for a in apps}
    kind = "Kustomization" if expect.gitops_tool == "flux" else "Application"
    for name in expected:
        if name not in present and not note:
            rows.append(AppRow(kind, name, "Missing", "Missing", "", None, "Expected from the rendered tree."))
    return rows, [note] if note else []


def _age(now: datetime.datetime, since: datetime.datetime | None) -> str:
    if since is None:
        return "unknown"
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"


def _registry(image: str) -> str:
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first or first == "localhost") else "docker.io"


def diagnose(expect: Expectations, state: ClusterState, now: datetime.datetime) -> list[Verdict]:
    """One or more verdicts per check of the guide's troubleshooting list; a check without problems gives one OK."""
    verdicts: list[Verdict] = []
    project_by_ns = {p.namespace: p for p in expect.projects}

    # Certificates not Ready (cert-manager).
    problems = []
    if state.certificates is None:
        problems.append(Verdict("certificate", False, "cert-manager", "The Certificate API is not served: "
                                "cert-manager is not installed, so no TLS certificate can be issued.",
                                "Install cert-manager and its ClusterIssuer (Cloudflare DNS01) before the platform."))
    for cert in state.certificates or ():
        if cert.ready:
            continue
        text = f"{cert.reason}: {cert.message}".strip(": ")
        fix = (f"kubectl describe certificate {cert.name} -n {cert.namespace}, then its CertificateRequest, Order "
               "and Challenge; check the ClusterIssuer, the Cloudflare API token Secret and that the domain's DNS "
               "zone is on Cloudflare.")
        if any(marker in text.lower() for marker in RATE_LIMIT_MARKERS):
            fix += (" Let's Encrypt rate limit: at most 5 certificates per week for the same names; wait for the "
                    "window to pass and test with the staging issuer meanwhile.")
        p = project_by_ns.get(cert.namespace)
        names = f" ({', '.join(cert.dns_names)})" if cert.dns_names else ""
        problems.append(Verdict("certificate", False, f"{cert.namespace}/{cert.name}{names}",
                                f"Not Ready — {text or 'no reason given'}",
                                fix, p.id if p else ""))
    verdicts += problems or [Verdict("certificate", True, "Certificates", "Every Certificate is Ready.")]

    # ImagePullBackOff / ErrImagePull.
    problems = []
    for pod in state.pods:
        for c in pod.containers:
            if c.waiting_reason in IMAGE_PULL_REASONS:
                registry = _registry(c.image)
                p = project_by_ns.get(pod.namespace)
                problems.append(Verdict(
                    "image_pull", False, f"{pod.namespace}/{pod.name} ({c.name})",
                    f"{c.waiting_reason}: image {c.image} from registry {registry}. {c.waiting_message}".strip(),
                    f"Check that {c.image} exists in {registry} (repository and tag pushed); on EKS the node role "
                    "needs ECR pull rights (AmazonEC2ContainerRegistryReadOnly) and the registry must be the cluster's "
                    "account and region; on Minikube load the image into the node (imagePullPolicy Never).",
                    p.id if p else ""))
    verdicts += problems or [Verdict("image_pull", True, "Images", "No container is failing to pull its image.")]

    # 503 on a project URL: the dev container's Service has no ready endpoints.
    ready: dict[tuple[str, str], int] = {}
    for s in state.endpoint_slices:
        ready[(s.namespace, s.service)] = ready.get((s.namespace, s.service), 0) + s.ready
    cluster_namespaces = {ns.name for ns in state.namespaces}
    problems = []
    for p in expect.projects:
        if p.state != "active" or p.namespace not in cluster_namespaces:
            continue
        for service, host in p.services:
            if ready.get((p.namespace, service), 0) == 0:
                problems.append(Verdict(
                    "project_503", False, host,
                    f"Service {service} in {p.namespace} has no ready endpoints: the ingress answers 503.",
                    f"kubectl get pods -n {p.namespace}: the dev container is not Ready (start command, port, "
                    "readiness probe) or was stopped (scaled to zero); kubectl describe endpointslices -n "
                    f"{p.namespace} -l kubernetes.io/service-name={service}.", p.id))
    verdicts += problems or [Verdict("project_503", True, "Project URLs",
                                     "Every active project's Service has ready endpoints.")]

    # Namespaces stuck in Terminating.
    problems = []
    for ns in state.namespaces:
        if ns.deletion_timestamp is None and ns.phase != "Terminating":
            continue
        holders = ", ".join(ns.finalizers) or "none"
        remaining = "; ".join(message for _, _, message in ns.conditions if message)
        p = project_by_ns.get(ns.name)
        problems.append(Verdict(
            "namespace_terminating", False, ns.name,
            f"Terminating for {_age(now, ns.deletion_timestamp)}; finalizers: {holders}"
            + (f"; {remaining}" if remaining else ""),
            "The namespace-reaper CronJob (every 15 min) clears proj-* namespaces stuck in Terminating; if it "
            "stays, find the objects still holding finalizers (the conditions name them: VolumeSnapshots, PVCs, "
            "Argo CD resources) and remove the finalizer of the blocking object, never of the namespace first.",
            p.id if p else ""))
    verdicts += problems or [Verdict("namespace_terminating", True, "Namespaces", "No namespace is stuck.")]

    # Backend pods restarting or not Ready (the guide: "Site not loading after backend restart").
    problems = []
    backends = [pod for pod in state.pods if pod.namespace == PLATFORM_NAMESPACE and pod.label(BACKEND_LABEL[0])
                == BACKEND_LABEL[1]]
    if not backends:
        problems.append(Verdict("backend", False, PLATFORM_NAMESPACE, "No tesslate-backend pod is running.",
                                "kubectl get deploy,rs,pods -n tesslate; check the Argo CD / Flux sync of the "
                                "platform and the Deployment's events."))
    for pod in backends:
        restarts = sum(c.restart_count for c in pod.containers)
        last = ", ".join(sorted({c.last_terminated_reason for c in pod.containers if c.last_terminated_reason}))
        if pod.ready and restarts < RESTART_THRESHOLD:
            continue
        detail = ("not Ready" if not pod.ready else "Ready") + f", {restarts} restarts" + (
            f", last terminated: {last}" if last else "")
        problems.append(Verdict(
            "backend", False, f"{pod.namespace}/{pod.name}", detail,
            "kubectl logs -n tesslate " + pod.name + " --previous; check that DATABASE_URL and REDIS_URL answer, "
            "the /health readiness probe and the memory limit (OOMKilled). After a restart the Ingress keeps "
            "sessions on the TESS_AFFINITY cookie: clear it if the site still does not load."))
    verdicts += problems or [Verdict("backend", True, "tesslate-backend",
                                     f"{len(backends)} backend pods Ready, none restarting.")]
    return verdicts


def live_report(expect: Expectations, state: ClusterState, now: datetime.datetime, *,
                eks_node_groups: tuple[EksNodeGroup, ...] | None = None, notes: tuple[str, ...] = ()) -> LiveReport:
    """The whole live view; ``eks_node_groups`` (None: not read) adds the EKS API comparison."""
    apps, app_notes = gitops_rows(expect, state)
    eks_rows = compare_eks_node_groups(expect, eks_node_groups) if eks_node_groups is not None else []
    return LiveReport(tuple(compare_nodes(expect, state)), tuple(compare_namespaces(expect, state)), tuple(apps),
                      tuple(diagnose(expect, state, now)), tuple(app_notes) + tuple(notes), tuple(eks_rows))

"""Read-only Kubernetes reads for the live view and the troubleshooting diagnostics.

One call, ``cluster_read(context=...)``, lists what the portal compares with its model: nodes, namespaces, pods,
EndpointSlices, cert-manager Certificates, Argo CD Applications and Flux Kustomizations. Plain frozen dataclasses
out, no models. Lists are paged (``limit`` / ``continue``). A custom resource whose API the cluster does not serve
(cert-manager, Argo CD or Flux not installed) comes back as ``None``, not as an error.
Errors of the transport or the API server become ``clients.kubernetes.ClusterError``.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from kubernetes import client as k8s_client

from clients.kubernetes import REQUEST_TIMEOUT, api_client, cluster_error

PAGE_SIZE = 500
MAX_PAGES = 200

# Well-known node labels (Kubernetes and EKS managed node groups).
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_CAPACITY_TYPE = "eks.amazonaws.com/capacityType"
LABEL_NODEGROUP = "eks.amazonaws.com/nodegroup"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"  # on EndpointSlices


@dataclass(frozen=True)
class Node:
    name: str
    node_group: str
    instance_type: str
    capacity_type: str  # ON_DEMAND | SPOT | "" (not an EKS managed node)
    labels: tuple[tuple[str, str], ...]
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect)
    ready: bool


@dataclass(frozen=True)
class Namespace:
    name: str
    phase: str
    created: datetime.datetime | None
    deletion_timestamp: datetime.datetime | None
    finalizers: tuple[str, ...]  # spec.finalizers and metadata.finalizers
    conditions: tuple[tuple[str, str, str], ...]  # (type, reason, message) of the True conditions


@dataclass(frozen=True)
class ContainerState:
    name: str
    image: str
    ready: bool
    restart_count: int
    waiting_reason: str
    waiting_message: str
    last_terminated_reason: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    phase: str
    ready: bool
    containers: tuple[ContainerState, ...]

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    service: str
    ready: int
    not_ready: int


@dataclass(frozen=True)
class Certificate:
    namespace: str
    name: str
    ready: bool
    reason: str
    message: str
    dns_names: tuple[str, ...]
    not_after: str


@dataclass(frozen=True)
class GitOpsApp:
    """An Argo CD Application or a Flux Kustomization, reduced to what the live view compares."""

    kind: str  # Application | Kustomization
    namespace: str
    name: str
    project: str  # Argo CD spec.project; "" for Flux
    sync_status: str  # Argo: Synced / OutOfSync / Unknown; Flux: the Ready condition's reason
    health_status: str  # Argo: Healthy / Progressing / Degraded / Missing …; Flux: Ready / NotReady / Unknown
    revision: str  # the commit it runs (Flux: "main@sha1:<sha>" as reported)
    message: str


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[Node, ...]
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    endpoint_slices: tuple[EndpointSlice, ...]
    certificates: tuple[Certificate, ...] | None  # None: cert-manager's API is not served
    applications: tuple[GitOpsApp, ...] | None  # None: Argo CD's API is not served
    kustomizations: tuple[GitOpsApp, ...] | None  # None: Flux's API is not served


def _time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _list(call, **kwargs) -> list[dict]:
    """Every item of a list call, following ``metadata.continue``; raw JSON objects (the API's own shapes)."""
    items: list[dict] = []
    token = None
    for _ in range(MAX_PAGES):
        extra = {"_continue": token} if token else {}
        response = call(limit=PAGE_SIZE, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs, **extra)
        body = json.loads(response.data)
        items.extend(body.get("items") or [])
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return items
    raise RuntimeError(f"the list did not end after {MAX_PAGES} pages")


def _custom(api: k8s_client.CustomObjectsApi, group: str, version: str, plural: str) -> list[dict] | None:
    try:
        return _list(api.list_cluster_custom_object, group=group, version=version, plural=plural)
    except k8s_client.ApiException as exc:
        if exc.status == 404:  # the CRD is not installed
            return None
        raise


def _condition(obj: dict, kind: str) -> dict:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return {}


def _node(obj: dict) -> Node:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    labels = meta.get("labels") or {}
    return Node(
        name=meta.get("name", ""), node_group=labels.get(LABEL_NODEGROUP, ""),
        instance_type=labels.get(LABEL_INSTANCE_TYPE, ""), capacity_type=labels.get(LABEL_CAPACITY_TYPE, ""),
        labels=tuple(sorted(labels.items())),
        taints=tuple((t.get("key", ""), t.get("value", "") or "", t.get("effect", ""))
                     for t in spec.get("taints") or []),
        ready=_condition(obj, "Ready").get("status") == "True")


def _namespace(obj: dict) -> Namespace:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    finalizers = tuple((obj.get("spec") or {}).get("finalizers") or ()) + tuple(meta.get("finalizers") or ())
    conditions = tuple((c.get("type", ""), c.get("reason", ""), c.get("message", ""))
                       for c in status.get("conditions") or [] if c.get("status") == "True")
    return Namespace(name=meta.get("name", ""), phase=status.get("phase", ""),
                     created=_time(meta.get("creationTimestamp")),
                     deletion_timestamp=_time(meta.get("deletionTimestamp")), finalizers=finalizers,
                     conditions=conditions)


def _pod(obj: dict) -> Pod:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    containers = []
    for cs in status.get("containerStatuses") or []:
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        waiting = state.get("waiting") or {}
        containers.append(ContainerState(
            name=cs.get("name", ""), image=cs.get("image", ""), ready=bool(cs.get("ready")),
            restart_count=int(cs.get("restartCount") or 0), waiting_reason=waiting.get("reason", ""),
            waiting_message=waiting.get("message", ""),
            last_terminated_reason=(last.get("terminated") or {}).get("reason", "")))
    return Pod(namespace=meta.get("namespace", ""), name=meta.get("name", ""),
               labels=tuple(sorted((meta.get("labels") or {}).items())), phase=status.get("phase", ""),
               ready=_condition(obj, "Ready").get("status") == "True", containers=tuple(containers))


def _endpoint_slice(obj: dict) -> EndpointSlice:
    meta = obj.get("metadata") or {}
    ready = not_ready = 0
    for endpoint in obj.get("endpoints") or []:
        # conditions.ready: nil means ready (discovery.k8s.io/v1).
        if (endpoint.get("conditions") or {}).get("ready", True) is False:
            not_ready += 1
        else:
            ready += 1
    return EndpointSlice(namespace=meta.get("namespace", ""),
                         service=(meta.get("labels") or {}).get(LABEL_SERVICE_NAME, ""), ready=ready,
                         not_ready=not_ready)


def _certificate(obj: dict) -> Certificate:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ready = _condition(obj, "Ready")
    return Certificate(namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                       ready=ready.get("status") == "True", reason=ready.get("reason", ""),
                       message=ready.get("message", ""), dns_names=tuple(spec.get("dnsNames") or ()),
                       not_after=status.get("notAfter", ""))


def _application(obj: dict) -> GitOpsApp:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    message = health.get("message", "") or ((status.get("operationState") or {}).get("message", ""))
    return GitOpsApp(kind="Application", namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                     project=spec.get("project", ""), sync_status=sync.get("status", "Unknown"),
                     health_status=health.get("status", "Unknown"), revision=sync.get("revision", ""),
                     message=message)


def _kustomization(obj: dict) -> GitOpsApp:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    ready = _condition(obj, "Ready")
    health = {"True": "Ready", "False": "NotReady"}.get(ready.get("status", ""), "Unknown")
    return GitOpsApp(kind="Kustomization", namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                     project="", sync_status=ready.get("reason", "Unknown"), health_status=health,
                     revision=status.get("lastAppliedRevision", ""), message=ready.get("message", ""))


def cluster_read(*, context: str = "") -> ClusterState:
    """Everything the live view reads from the cluster of kubeconfig ``context`` (read-only list calls).

    Raises ClusterError (unreachable, unauthorized, no kubeconfig).
    """
    try:
        with api_client(context=context) as api:
            core = k8s_client.CoreV1Api(api)
            custom = k8s_client.CustomObjectsApi(api)
            discovery = k8s_client.DiscoveryV1Api(api)
            nodes = tuple(_node(o) for o in _list(core.list_node))
            namespaces = tuple(_namespace(o) for o in _list(core.list_namespace))
            pods = tuple(_pod(o) for o in _list(core.list_pod_for_all_namespaces))
            slices = tuple(_endpoint_slice(o) for o in _list(discovery.list_endpoint_slice_for_all_namespaces))
            certificates = _custom(custom, "cert-manager.io", "v1", "certificates")
            applications = _custom(custom, "argoproj.io", "v1alpha1", "applications")
            kustomizations = _custom(custom, "kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one ClusterError with a one-line reason
        raise cluster_error(context, exc) from None
    return ClusterState(
        nodes=nodes, namespaces=namespaces, pods=pods, endpoint_slices=slices,
        certificates=None if certificates is None else tuple(_certificate(o) for o in certificates),
        applications=None if applications is None else tuple(_application(o) for o in applications),
        kustomizations=None if kustomizations is None else tuple(_kustomization(o) for o in kustomizations))

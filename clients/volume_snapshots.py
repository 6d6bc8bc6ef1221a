"""VolumeSnapshots and VolumeSnapshotContents of a cluster (``snapshot.storage.k8s.io/v1``), joined.

Read through the CustomObjectsApi of the real ``kubernetes`` client, paginated with ``limit`` / ``continue``.
A VolumeSnapshot names its content in ``status.boundVolumeSnapshotContentName``; the content names the EBS
snapshot in ``status.snapshotHandle`` (or ``spec.source.snapshotHandle`` when pre-provisioned for a restore).
Shapes: the external-snapshotter CRDs (``/work/shared/crds`` in tests). Plain data out, no models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from clients.kubernetes import REQUEST_TIMEOUT, api_client, cluster_error

GROUP, VERSION = "snapshot.storage.k8s.io", "v1"
PAGE_SIZE = 500

LABEL_PROJECT_ID = "tesslate.io/project-id"
BARE_LABEL_PROJECT_ID = "project-id"  # Studio's own namespaces and snapshots also carry the bare key
LABEL_SNAPSHOT_TYPE = "tesslate.io/snapshot-type"
BARE_LABEL_SNAPSHOT_TYPE = "snapshot-type"


@dataclass(frozen=True)
class VolumeSnapshotContentInfo:
    """A VolumeSnapshotContent. ``restore_size_bytes``: status.restoreSize (bytes); times in UTC."""

    name: str
    driver: str
    deletion_policy: str
    snapshot_handle: str
    ref_namespace: str
    ref_name: str
    ready_to_use: bool | None
    restore_size_bytes: int | None
    created_at: datetime | None
    error_message: str


@dataclass(frozen=True)
class VolumeSnapshotInfo:
    """A VolumeSnapshot joined with its bound content (``content`` None while unbound).

    ``ready_to_use`` None means the snapshot controller has not said yet (no status); ``restore_size``: the
    Kubernetes quantity text of status.restoreSize (e.g. ``5Gi``).
    """

    namespace: str
    name: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    pvc_name: str
    class_name: str
    content_name: str
    ready_to_use: bool | None
    restore_size: str
    created_at: datetime | None
    error_message: str
    content: VolumeSnapshotContentInfo | None

    def label(self, *keys: str) -> str:
        labels = dict(self.labels)
        for key in keys:
            if labels.get(key):
                return labels[key]
        return ""

    @property
    def project_id(self) -> str:
        return self.label(LABEL_PROJECT_ID, BARE_LABEL_PROJECT_ID)

    @property
    def snapshot_type(self) -> str:
        return self.label(LABEL_SNAPSHOT_TYPE, BARE_LABEL_SNAPSHOT_TYPE)

    @property
    def snapshot_handle(self) -> str:
        return self.content.snapshot_handle if self.content else ""


@dataclass(frozen=True)
class ClusterSnapshots:
    """Everything read from one cluster: snapshots joined with contents, and contents no snapshot binds."""

    snapshots: tuple[VolumeSnapshotInfo, ...]
    unbound_contents: tuple[VolumeSnapshotContentInfo, ...]


def _rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _content(obj: dict) -> VolumeSnapshotContentInfo:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("volumeSnapshotRef") or {}
    created_ns = status.get("creationTime")  # nanoseconds since the epoch (int64)
    return VolumeSnapshotContentInfo(
        name=obj["metadata"]["name"], driver=spec.get("driver", ""), deletion_policy=spec.get("deletionPolicy", ""),
        snapshot_handle=status.get("snapshotHandle") or (spec.get("source") or {}).get("snapshotHandle") or "",
        ref_namespace=ref.get("namespace", ""), ref_name=ref.get("name", ""),
        ready_to_use=status.get("readyToUse"),
        restore_size_bytes=int(status["restoreSize"]) if status.get("restoreSize") is not None else None,
        created_at=datetime.fromtimestamp(int(created_ns) / 1e9, tz=UTC) if created_ns else
        _rfc3339(obj["metadata"].get("creationTimestamp")),
        error_message=((status.get("error") or {}).get("message") or ""),
    )


def _snapshot(obj: dict, contents: dict[str, VolumeSnapshotContentInfo]) -> VolumeSnapshotInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    source = spec.get("source") or {}
    content_name = status.get("boundVolumeSnapshotContentName") or source.get("volumeSnapshotContentName") or ""
    return VolumeSnapshotInfo(
        namespace=meta.get("namespace", ""), name=meta["name"], uid=meta.get("uid", ""),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        pvc_name=source.get("persistentVolumeClaimName", ""), class_name=spec.get("volumeSnapshotClassName") or "",
        content_name=content_name, ready_to_use=status.get("readyToUse"),
        restore_size=str(status.get("restoreSize") or ""),
        created_at=_rfc3339(status.get("creationTime")) or _rfc3339(meta.get("creationTimestamp")),
        error_message=((status.get("error") or {}).get("message") or ""),
        content=contents.get(content_name),
    )


def _list_all(api, plural: str) -> list[dict]:
    from kubernetes.client import CustomObjectsApi

    objects, token = [], None
    custom = CustomObjectsApi(api)
    while True:
        kwargs = {"limit": PAGE_SIZE, "_request_timeout": REQUEST_TIMEOUT}
        if token:
            kwargs["_continue"] = token
        page = custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
        objects.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return objects


def list_volume_snapshots(*, context: str = "") -> ClusterSnapshots:
    """All VolumeSnapshots of the cluster (every namespace) joined with their VolumeSnapshotContents.

    ``context``: the kubeconfig context (``Environment.kube_context``). Raises ClusterError (unreachable, 401/403,
    the CRDs missing: 404).
    """
    try:
        with api_client(context=context) as api:
            contents = {item.name: item for item in map(_content, _list_all(api, "volumesnapshotcontents"))}
            raw = _list_all(api, "volumesnapshots")
    except Exception as exc:  # noqa: BLE001 - every failure becomes one ClusterError
        raise cluster_error(context, exc) from None
    snapshots = tuple(sorted((_snapshot(obj, contents) for obj in raw), key=lambda s: (s.namespace, s.name)))
    bound = {snap.content_name for snap in snapshots}
    unbound = tuple(sorted((c for name, c in contents.items() if name not in bound), key=lambda c: c.name))
    return ClusterSnapshots(snapshots=snapshots, unbound_contents=unbound)


def read_volume_snapshot(*, context: str = "", namespace: str, name: str) -> VolumeSnapshotInfo | None:
    """One VolumeSnapshot joined with its bound VolumeSnapshotContent (``content`` None while unbound), or None
    when the cluster has no such VolumeSnapshot (yet: the GitOps tool may not have synced it).

    The hibernation polls this until ``ready_to_use`` is true and ``snapshot_handle`` (the content's
    ``status.snapshotHandle``, the EBS snapshot id) is known. Raises ClusterError (unreachable, 401/403, 5xx).
    """
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    try:
        with api_client(context=context) as api:
            custom = CustomObjectsApi(api)
            try:
                obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "volumesnapshots", name,
                                                          _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            contents = {}
            content_name = (obj.get("status") or {}).get("boundVolumeSnapshotContentName")
            if content_name:
                try:
                    contents[content_name] = _content(custom.get_cluster_custom_object(
                        GROUP, VERSION, "volumesnapshotcontents", content_name, _request_timeout=REQUEST_TIMEOUT))
                except ApiException as exc:
                    if exc.status != 404:
                        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one ClusterError
        raise cluster_error(context, exc) from None
    return _snapshot(obj, contents)

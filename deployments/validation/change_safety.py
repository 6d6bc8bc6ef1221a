"""Change safety: refuse changes a Kubernetes API server rejects after creation, before they are committed.

``kubectl kustomize`` and the schemas accept a PVC whose size went from 2Gi to 1Gi; the API server does not, and
under Flux one object that fails to apply stops the whole environment from syncing (pruning included). This check
compares each object about to be committed with its version at the repository's HEAD, by (API group, kind,
namespace, name), and reports every change of a field the API server keeps immutable, citing the field and saying
what to do instead. A change that is legal only by replacing the object is never a side effect of a save: it
needs an explicit, confirmed replacement, which the caller passes as ``replacements`` (those objects are skipped).

The comparison works on the YAML documents of the changed files as the portal writes them (objects and the
strategic-merge patches of overlays); the same object in the same file is compared first, then an object that moved
to another changed file.

Rules (``RULES`` below; ids ``immutable-field``, ``pvc-shrink``, ``pvc-expansion-not-allowed``,
``service-type-change``):

- PersistentVolumeClaim ``spec.resources.requests.storage`` may not shrink (``pvc-shrink``), and may only grow when
  its StorageClass in the same environment has ``allowVolumeExpansion: true`` (``pvc-expansion-not-allowed``);
  ``spec.storageClassName``, ``spec.accessModes``, ``spec.volumeName``, ``spec.volumeMode``, ``spec.selector``,
  ``spec.dataSource`` and ``spec.dataSourceRef`` are immutable (core/v1 PersistentVolumeClaimSpec: "spec is
  immutable after creation except resources.requests and volumeAttributesClassName").
- StorageClass ``provisioner``, ``parameters``, ``reclaimPolicy``, ``volumeBindingMode`` (storage.k8s.io/v1: updates
  to these are forbidden).
- Deployment, ReplicaSet, DaemonSet ``spec.selector`` (apps/v1: immutable).
- StatefulSet ``spec.selector``, ``spec.serviceName``, ``spec.volumeClaimTemplates``, ``spec.podManagementPolicy``
  (apps/v1: only replicas, ordinals, template, updateStrategy, persistentVolumeClaimRetentionPolicy and
  minReadySeconds may change).
- Job ``spec.selector`` and ``spec.template`` (batch/v1: the pod template of a Job is immutable).
- Service ``spec.clusterIP`` / ``spec.clusterIPs`` (core/v1: immutable once set) and ``spec.type``
  (``service-type-change``: moving between ClusterIP, NodePort, LoadBalancer and ExternalName releases or allocates
  addresses and node ports clients depend on).
- RoleBinding and ClusterRoleBinding ``roleRef`` (rbac.authorization.k8s.io/v1: immutable).
- Secret and ConfigMap ``data``, ``stringData``, ``binaryData`` once ``immutable: true`` (core/v1).
- VolumeSnapshot ``spec.source`` and VolumeSnapshotContent ``spec.source``, ``spec.sourceVolumeMode``
  (snapshot.storage.k8s.io/v1 CRDs: ``self == oldSelf`` validation rules).
"""

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

import yaml

from deployments.validation.problems import ValidationProblem

ObjectId = tuple[str, str, str, str]  # (API group, kind, namespace, name)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MISSING = object()

RECREATE_VOLUME = ("create a new volume and restore the data from a snapshot, then switch the workload to it "
                   "(an explicit, confirmed replacement)")
RECREATE_OBJECT = "delete and re-create the object under a new name in an explicit, confirmed replacement"


@dataclass(frozen=True)
class Rule:
    """One protected field: ``group``/``kind`` of the object, the field's ``path`` (keys from the top), ``rule`` id,
    the Kubernetes ``reference`` it follows and ``advice`` (what to do instead)."""

    group: str
    kind: str
    path: tuple[str, ...]
    rule: str
    reference: str
    advice: str
    only_if_immutable: bool = False  # Secret/ConfigMap data: protected only once `immutable: true`

    @property
    def field(self) -> str:
        return ".".join(self.path)


def _rules() -> list[Rule]:
    pvc = "core/v1 PersistentVolumeClaimSpec is immutable after creation except resources.requests"
    rules = [Rule("", "PersistentVolumeClaim", ("spec", name), "immutable-field", pvc, RECREATE_VOLUME)
             for name in ("storageClassName", "accessModes", "volumeName", "volumeMode", "selector", "dataSource",
                          "dataSourceRef")]
    storage_class = "storage.k8s.io/v1 StorageClass: updates to provisioner, parameters, reclaimPolicy and " \
                    "volumeBindingMode are forbidden"
    rules += [Rule("storage.k8s.io", "StorageClass", (name,), "immutable-field", storage_class,
                   "create a StorageClass under a new name and move volumes to it (new volumes, restored from "
                   "snapshots); keep this one as it is") for name in ("provisioner", "parameters", "reclaimPolicy",
                                                                      "volumeBindingMode")]
    for kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        rules.append(Rule("apps", kind, ("spec", "selector"), "immutable-field",
                          f"apps/v1 {kind} spec.selector is immutable", RECREATE_OBJECT))
    rules += [Rule("apps", "StatefulSet", ("spec", name), "immutable-field",
                   "apps/v1 StatefulSet: only replicas, ordinals, template, updateStrategy, "
                   "persistentVolumeClaimRetentionPolicy and minReadySeconds may change",
                   RECREATE_OBJECT if name != "volumeClaimTemplates" else RECREATE_VOLUME)
              for name in ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")]
    rules += [Rule("batch", "Job", ("spec", name), "immutable-field",
                   f"batch/v1 Job spec.{name} is immutable", "run the change as a new Job under a new name")
              for name in ("selector", "template")]
    rules += [Rule("", "Service", ("spec", name), "immutable-field", f"core/v1 Service spec.{name} is immutable "
                   "once set", "leave the cluster IP to the API server, or re-create the Service in an explicit, "
                   "confirmed replacement") for name in ("clusterIP", "clusterIPs")]
    rules.append(Rule("", "Service", ("spec", "type"), "service-type-change",
                      "core/v1 Service spec.type: a change releases or allocates cluster IPs, node ports and load "
                      "balancers that clients depend on",
                      "create a second Service of the new type, move clients to it, then remove the old one"))
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        rules.append(Rule("rbac.authorization.k8s.io", kind, ("roleRef",), "immutable-field",
                          f"rbac.authorization.k8s.io/v1 {kind} roleRef is immutable",
                          "create a binding under a new name and delete this one"))
    for kind in ("Secret", "ConfigMap"):
        rules += [Rule("", kind, (name,), "immutable-field", f"core/v1 {kind} with immutable: true cannot change "
                       f"its {name}", "write the new data under a new name and point the workloads at it",
                       only_if_immutable=True) for name in ("data", "stringData", "binaryData")]
    rules.append(Rule("snapshot.storage.k8s.io", "VolumeSnapshot", ("spec", "source"), "immutable-field",
                      "snapshot.storage.k8s.io/v1 VolumeSnapshot spec.source is immutable (CRD rule self == oldSelf)",
                      "create a new VolumeSnapshot under a new name"))
    rules += [Rule("snapshot.storage.k8s.io", "VolumeSnapshotContent", ("spec", name), "immutable-field",
                   f"snapshot.storage.k8s.io/v1 VolumeSnapshotContent spec.{name} is immutable (CRD rule "
                   "self == oldSelf)", "create a new VolumeSnapshotContent under a new name")
              for name in ("source", "sourceVolumeMode")]
    return rules


RULES: tuple[Rule, ...] = tuple(_rules())
PVC_STORAGE = ("spec", "resources", "requests", "storage")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10) ** 3,
            "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15,
            "E": Decimal(10) ** 18}


def object_id(obj: dict) -> ObjectId | None:
    """(API group, kind, namespace, name) of a Kubernetes object, or None for anything else."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or not isinstance(obj.get("apiVersion"), str):
        return None
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if not metadata.get("name"):
        return None
    api_version = obj["apiVersion"]
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return group, obj["kind"], str(metadata.get("namespace") or ""), str(metadata["name"])


def quantity_value(value) -> Decimal | None:
    """A Kubernetes quantity (``resource.Quantity`` grammar: binary, decimal SI or exponent suffixes) as a number,
    None when it is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    if not isinstance(value, str) or not value:
        return None
    number, factor = value, 1
    for suffix, suffix_factor in list(_BINARY.items()) + sorted(_DECIMAL.items(), key=lambda item: -len(item[0])):
        if suffix and value.endswith(suffix):
            number, factor = value[: -len(suffix)], suffix_factor
            break
    if not number or any(char not in "0123456789.+-eE" for char in number) or not number.isascii():
        return None
    try:
        return Decimal(number) * factor
    except ArithmeticError:
        return None


def _get(obj, path: tuple[str, ...]):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _label(object_key: ObjectId) -> str:
    group, kind, namespace, name = object_key
    where = f"{namespace}/{name}" if namespace else name
    return f"{kind} {where}" + (f" ({group})" if group else "")


def _show(value) -> str:
    if value is _MISSING:
        return "(not set)"
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text if len(text) <= 120 else text[:117] + "…"


def _documents(data: bytes | None) -> list:
    if data is None:
        return []
    try:
        return [document for document in yaml.load_all(data, Loader=_Loader) if document is not None]
    except yaml.YAMLError:
        return []  # the YAML check of the gate reports the file


def _objects(paths: Iterable[str], read: Callable[[str], bytes | None]) -> dict[ObjectId, list[tuple[str, dict]]]:
    found: dict[ObjectId, list[tuple[str, dict]]] = {}
    for path in paths:
        if not path.endswith((".yaml", ".yml")):
            continue
        for document in _documents(read(path)):
            items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" \
                else [document]
            for item in items if isinstance(items, list) else ():
                key = object_id(item)
                if key is not None:
                    found.setdefault(key, []).append((path, item))
    return found


def _pairs(base: list[tuple[str, dict]], new: list[tuple[str, dict]]) -> list[tuple[str, dict, dict]]:
    """(new path, base object, new object): same file first, then a single object that moved between files."""
    pairs = []
    base_left = list(base)
    new_left = []
    for path, obj in new:
        match = next((item for item in base_left if item[0] == path), None)
        if match is not None:
            base_left.remove(match)
            pairs.append((path, match[1], obj))
        else:
            new_left.append((path, obj))
    if len(base_left) == 1 and len(new_left) == 1:
        pairs.append((new_left[0][0], base_left[0][1], new_left[0][1]))
    return pairs


def _environment_folder(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 and parts[0] == "environments" else ""


def change_safety_check(*, changed: Iterable[str], read_new: Callable[[str], bytes | None],
                        read_base: Callable[[str], bytes | None],
                        list_new: Callable[[str], Iterable[str]] | None = None,
                        replacements: Collection[ObjectId] = ()) -> list[ValidationProblem]:
    """Problems of the changes from the repository's HEAD to the new tree that an API server would refuse.

    ``changed``: repository-relative paths of the changed files (added, modified or deleted; only files present in
    both versions can change an object in place, but an object may move between changed files). ``read_new(path)``
    and ``read_base(path)`` return a file's bytes in the new tree / at HEAD, or None where it does not exist.
    ``list_new(folder)`` lists the new tree's files under a folder (used to find the StorageClass of a growing PVC
    in the same ``environments/<env>/`` folder; without it, only the changed files are searched).
    ``replacements``: object ids whose replacement was explicitly confirmed; their changes are not reported.
    """
    changed = sorted(set(changed))
    base_objects = _objects(changed, read_base)
    if not base_objects:
        return []
    new_objects = _objects(changed, read_new)
    skip = set(replacements)
    problems: list[ValidationProblem] = []
    for key in sorted(set(base_objects) & set(new_objects)):
        if key in skip:
            continue
        for path, old, new in _pairs(base_objects[key], new_objects[key]):
            problems += _compare(key, path, old, new, new_objects, read_new, list_new)
    return problems


def _compare(key: ObjectId, path: str, old: dict, new: dict, new_objects, read_new,
             list_new) -> list[ValidationProblem]:
    group, kind, _, _ = key
    problems = []
    for rule in RULES:
        if rule.group != group or rule.kind != kind:
            continue
        if rule.only_if_immutable and old.get("immutable") is not True:
            continue
        before, after = _get(old, rule.path), _get(new, rule.path)
        if before == after:
            continue
        if rule.rule == "service-type-change" and {before, after} <= {_MISSING, "ClusterIP"}:
            continue  # ClusterIP is the default type: writing it out or leaving it away is no change
        problems.append(ValidationProblem(path, rule.rule, (
            f"{_label(key)}: {rule.field} changes from {_show(before)} to {_show(after)}, which the API server "
            f"refuses ({rule.reference}). Instead, {rule.advice}.")))
    if (group, kind) == ("", "PersistentVolumeClaim"):
        problems += _pvc_size(key, path, old, new, new_objects, read_new, list_new)
    return problems


def _pvc_size(key: ObjectId, path: str, old: dict, new: dict, new_objects, read_new, list_new) -> list:
    before, after = _get(old, PVC_STORAGE), _get(new, PVC_STORAGE)
    old_size, new_size = quantity_value(before), quantity_value(after)
    if old_size is None or new_size is None or old_size == new_size:
        return []
    if new_size < old_size:
        return [ValidationProblem(path, "pvc-shrink", (
            f"{_label(key)}: spec.resources.requests.storage shrinks from {before} to {after}; the API server "
            "refuses to shrink a PersistentVolumeClaim (core/v1: storage requests may only grow). Keep "
            f"{before}, or {RECREATE_VOLUME}."))]
    class_name = _get(new, ("spec", "storageClassName"))
    if not isinstance(class_name, str):
        return []  # the cluster's default class: not in the tree, nothing to check
    storage_class = _find_storage_class(class_name, path, new_objects, read_new, list_new)
    if storage_class is None or storage_class.get("allowVolumeExpansion") is True:
        return []
    return [ValidationProblem(path, "pvc-expansion-not-allowed", (
        f"{_label(key)}: spec.resources.requests.storage grows from {before} to {after}, but StorageClass "
        f"{class_name} does not set allowVolumeExpansion: true, so the API server refuses the resize "
        f"(core/v1 PersistentVolumeClaim, storage.k8s.io/v1 StorageClass allowVolumeExpansion). Keep {before}, or "
        f"{RECREATE_VOLUME} on a StorageClass that allows expansion."))]


def _find_storage_class(name: str, near: str, new_objects, read_new, list_new) -> dict | None:
    for (group, kind, _, object_name), entries in new_objects.items():
        if (group, kind, object_name) == ("storage.k8s.io", "StorageClass", name):
            return entries[0][1]
    if list_new is None:
        return None
    for path in list_new(_environment_folder(near)):
        if not path.endswith((".yaml", ".yml")):
            continue
        data = read_new(path)
        if not data or b"StorageClass" not in data:
            continue
        for document in _documents(data):
            key = object_id(document)
            if key is not None and (key[0], key[1], key[3]) == ("storage.k8s.io", "StorageClass", name):
                return document
    return None


# --- the same rules for the inputs, so the admin and the ORM refuse them before anything is rendered --------------

def volume_resize_problem(*, what: str, old_size: str, new_size: str, expansion_allowed: bool) -> str | None:
    """Why a PersistentVolumeClaim of ``old_size`` cannot be changed to ``new_size`` in place (None: it can).

    Kubernetes refuses to shrink ``spec.resources.requests.storage`` and to grow it when the StorageClass does not
    set ``allowVolumeExpansion: true``. ``what`` names the volume in the message."""
    old_value, new_value = quantity_value(old_size), quantity_value(new_size)
    if old_value is None or new_value is None or old_value == new_value:
        return None
    if new_value < old_value:
        return (f"{what} cannot shrink from {old_size} to {new_size}: Kubernetes refuses to shrink a "
                f"PersistentVolumeClaim (spec.resources.requests.storage). Keep {old_size}, or {RECREATE_VOLUME}.")
    if not expansion_allowed:
        return (f"{what} cannot grow from {old_size} to {new_size}: this environment's StorageClass does not allow "
                f"volume expansion (allowVolumeExpansion), so Kubernetes refuses the resize. Keep {old_size}, or "
                f"{RECREATE_VOLUME}.")
    return None


def storage_class_change_problem(*, field: str, old: str, new: str, volumes: int) -> str | None:
    """Why an environment's StorageClass setting ``field`` cannot change from ``old`` to ``new`` while ``volumes``
    project volumes use the class (None: it can). A PersistentVolumeClaim's ``spec.storageClassName`` and a
    StorageClass's ``provisioner`` and ``parameters`` are immutable."""
    if old == new or volumes == 0:
        return None
    return (f"Changing {field} from {old} to {new} would change the StorageClass that {volumes} project volume(s) "
            "use, and Kubernetes keeps a PersistentVolumeClaim's spec.storageClassName and a StorageClass's "
            "provisioner and parameters immutable. Keep it; to move the volumes, create a new environment (or a "
            "new StorageClass name) and restore the projects there from snapshots.")

"""The fake API server's VolumeSnapshots and VolumeSnapshotContents match the upstream CRD schemas (read in place
from CRD_SCHEMA_DIR), so the client code is tested against real object shapes."""

import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.kube_store import SNAPSHOT_API, KubeAPI

CRD_DIR = os.environ.get("CRD_SCHEMA_DIR", "")


def _schema(plural: str) -> dict:
    path = Path(CRD_DIR) / f"snapshot.storage.k8s.io_{plural}.yaml"
    if not path.is_file():
        pytest.skip(f"CRD schemas not found in CRD_SCHEMA_DIR ({CRD_DIR or 'unset'})")
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("error", ["", "Failed to create snapshot: AccessDenied"])
def test_snapshot_objects_match_the_crds(error):
    api = KubeAPI()
    api.volume_snapshot_pair(namespace="proj-x", name="snap-x", pvc="project-storage",
                             handle="" if error else "snap-0123456789abcdef0", error=error)
    for plural in ("volumesnapshots", "volumesnapshotcontents"):
        schema = _schema(plural)
        objects = api.list(SNAPSHOT_API, plural)
        assert len(objects) == 1
        jsonschema.Draft7Validator(schema).validate(objects[0])
    broken = api.list(SNAPSHOT_API, "volumesnapshots")[0]
    broken["status"]["readyToUse"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(_schema("volumesnapshots")).validate(broken)

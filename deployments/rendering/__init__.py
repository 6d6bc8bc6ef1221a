"""The pure renderer: database snapshot in, GitOps repository files out (see units.py for the layout)."""

from deployments.rendering.common import delivered_secrets, secret_checksum_annotation, secret_versions_hash
from deployments.rendering.snapshot import (
    ContainerSnapshot,
    EnvironmentSnapshot,
    NodeGroupSnapshot,
    ProjectSnapshot,
    SecretSnapshot,
    TreeSnapshot,
    environments_snapshot,
)
from deployments.rendering.templating import RENDERER_VERSION
from deployments.rendering.units import RenderUnit, render_tree, snapshot_scopes, tree_units
from deployments.rendering.yamltext import yaml_scalar

__all__ = [
    "RENDERER_VERSION",
    "ContainerSnapshot",
    "EnvironmentSnapshot",
    "NodeGroupSnapshot",
    "ProjectSnapshot",
    "RenderUnit",
    "SecretSnapshot",
    "TreeSnapshot",
    "delivered_secrets",
    "environments_snapshot",
    "render_tree",
    "secret_checksum_annotation",
    "secret_versions_hash",
    "snapshot_scopes",
    "tree_units",
    "yaml_scalar",
]

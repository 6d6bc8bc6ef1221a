"""The pure renderer: a snapshot (plain data, read by deployments.selectors) in, GitOps repository files out.

Imports no models, no settings and no clients (an import-linter contract checks it); see units.py for the layout.
"""

from deployments.rendering.common import delivered_secrets, secret_checksum_annotation, secret_versions_hash
from deployments.rendering.snapshot import (
    ContainerSnapshot,
    EnvironmentSnapshot,
    NodeGroupSnapshot,
    ProjectSnapshot,
    SecretSnapshot,
    TreeSnapshot,
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
    "render_tree",
    "secret_checksum_annotation",
    "secret_versions_hash",
    "snapshot_scopes",
    "tree_units",
    "yaml_scalar",
]

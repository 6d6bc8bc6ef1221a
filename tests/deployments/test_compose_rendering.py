"""Docker Compose environments (deployments/rendering/compose.py): the rendered tree of the demo server."""

import os
from pathlib import Path

import pytest

from deployments.rendering import environments_snapshot, render_tree
from projects.demo import demo_load

pytestmark = pytest.mark.django_db

ENV = "single-server"
PREFIX = f"environments/{ENV}/"


@pytest.fixture
def demo_tree(settings):
    settings.GITOPS_SOURCE_URL = "https://git.example.com/tesslate/gitops.git"
    settings.GITOPS_BRANCH = "main"
    demo_load()
    return render_tree(environments_snapshot())


def test_smoke(demo_tree):
    out = Path(os.environ.get("COMPOSE_DUMP", "/tmp/compose-dump"))
    for path, content in demo_tree.items():
        if path.startswith(PREFIX):
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

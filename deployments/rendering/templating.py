"""The one jinja2 environment for manifest templates: sandboxed, strict, compiled once at import.

Templates live in ``templates/gitops/``. Every ``{{ expression }}`` goes through ``finalize``, which writes the
value as a quoted YAML scalar unless a filter (``yaml``, ``yaml_block``, ``yaml_flow``) already made it YAML, so a
template cannot emit an unquoted value by forgetting a filter. ``RENDERER_VERSION`` hashes the template sources
and this package's code: it is part of every unit fingerprint, so a changed template re-renders everything.
"""

import hashlib
import shlex
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, Template, Undefined
from jinja2.sandbox import SandboxedEnvironment

from deployments.rendering.yamltext import YamlText, yaml_block, yaml_flow, yaml_scalar

# Bump when the output changes for a reason the hashed sources below do not show (e.g. a dependency upgrade).
CODE_VERSION = "1"

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = PACKAGE_DIR.parent.parent / "templates" / "gitops"


def _finalize(value):
    if isinstance(value, YamlText):
        return value
    if isinstance(value, Undefined):
        # StrictUndefined (and the sandbox's unsafe-attribute marker) raise their own error when printed.
        return str(value)
    return yaml_scalar(value)


def _yaml_filter(value) -> YamlText:
    return YamlText(yaml_scalar(value))


def _build_environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates are read once; no per-render stat() of the source files.
        auto_reload=False,
        cache_size=-1,
    )
    environment.filters["yaml"] = _yaml_filter
    environment.filters["yaml_block"] = yaml_block
    environment.filters["yaml_flow"] = yaml_flow
    # For the few non-YAML files (a README): the text as it is.
    environment.filters["text"] = lambda value: YamlText(str(value))
    # For shell scripts: one word, quoted for POSIX shells (bash reads it back as the same string).
    environment.filters["sh"] = lambda value: YamlText(shlex.quote(str(value)))
    return environment


ENVIRONMENT = _build_environment()


def _template_names() -> list[str]:
    return sorted(path.relative_to(TEMPLATE_DIR).as_posix() for path in TEMPLATE_DIR.rglob("*.j2"))


# Compiled once; includes resolve from the environment's cache without touching the disk again.
TEMPLATES: dict[str, Template] = {name: ENVIRONMENT.get_template(name) for name in _template_names()}
for _template in TEMPLATES.values():
    # A plain dict instead of jinja's ChainMap over the environment's globals (which never change after this
    # module ran): each render copies its template's globals, and copying a ChainMap runs Python code per key.
    _template.globals = dict(_template.globals)


def _renderer_version() -> str:
    digest = hashlib.sha256(f"code-version:{CODE_VERSION}\n".encode())
    sources = [("templates", TEMPLATE_DIR, name) for name in TEMPLATES]
    sources += [("code", PACKAGE_DIR, path.name) for path in sorted(PACKAGE_DIR.glob("*.py"))]
    for kind, root, name in sources:
        content = (root / name).read_bytes()
        digest.update(f"{kind}:{name}:{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


RENDERER_VERSION = _renderer_version()


def render_template(name: str, context: dict) -> str:
    return TEMPLATES[name].render(context)

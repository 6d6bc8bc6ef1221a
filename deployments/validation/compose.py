"""The validation gate for Docker Compose environments (``environments/<env>/compose/compose.yaml``).

For every Compose environment folder the change affects:

1. ``compose/compose.yaml`` validates against the Compose Specification JSON schema (``COMPOSE_SCHEMA_PATH``,
   read in place; skipped with a message when the file is absent);
2. project isolation (the guide: "Docker networks"): a service of project X joins only network ``proj-X``, and
   no platform service but Traefik joins a project network;
3. Traefik's static and dynamic configuration parse, and every router names a service and middlewares that exist;
4. every ``compose/env/*.env.template`` line is a ``KEY=age:<file>`` reference to an age-armored file of the
   folder (a plaintext value there would reach git);
5. every shell script passes ``bash -n`` and, when it is installed, ``shellcheck``.

Problems carry repository-relative paths and never quote file contents beyond a schema path or a key name.
"""

import functools
import json
import logging
import posixpath
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import jsonschema
import yaml

from deployments.validation.problems import ValidationProblem

logger = logging.getLogger(__name__)

COMPOSE_FILE = "compose/compose.yaml"
AGE_ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----"
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
PROJECT_LABEL = "tesslate.io/project-id"
PROXY_SERVICE = "traefik"
MAX_SCHEMA_ERRORS = 20
SHELL_TIMEOUT_SECONDS = 60


@functools.lru_cache(maxsize=4)
def _schema_validator(path: str, mtime_ns: int) -> jsonschema.protocols.Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def compose_schema_validator(schema_path: str | Path | None) -> jsonschema.protocols.Validator | None:
    """The Compose Specification validator for ``schema_path`` (cached by file state), or None when absent."""
    if not schema_path:
        return None
    path = Path(schema_path)
    try:
        stat = path.stat()
    except OSError:
        return None
    return _schema_validator(str(path.resolve()), stat.st_mtime_ns)


def compose_environment_dirs(root: Path, changed: set[str] | None = None) -> list[str]:
    """Repository-relative ``environments/<env>`` folders holding a compose file (those ``changed`` affects).

    A folder is affected when a changed path lies inside it, or is the folder itself or one of its parents.
    """
    found = []
    for compose in sorted((root / "environments").glob(f"*/{COMPOSE_FILE}")):
        directory = compose.parent.parent.relative_to(root).as_posix()
        if changed is None or any(_inside(path, directory) for path in changed):
            found.append(directory)
    return found


def _inside(path: str, directory: str) -> bool:
    return path == "" or path == directory or path.startswith(directory + "/") or directory.startswith(path + "/")


def compose_tree_validate(*, root: Path, changed: set[str] | None = None, schema_path: str | Path | None = None,
                          shellcheck: str | None = "shellcheck",
                          report: Callable[[str], None] | None = None) -> list[ValidationProblem]:
    """Problems of the Compose environment folders under ``root`` (see the module docstring for the rules)."""
    report = report or (lambda message: logger.debug("%s", message))
    directories = compose_environment_dirs(Path(root), changed)
    if not directories:
        return []
    validator = compose_schema_validator(schema_path)
    if validator is None:
        where = f"{schema_path} is missing" if schema_path else "no schema path is configured"
        report(f"Compose files are not checked against the Compose Specification: {where} (COMPOSE_SCHEMA_PATH).")
    shellcheck_path = shutil.which(shellcheck) if shellcheck else None
    if shellcheck and shellcheck_path is None:
        report(f"Shell scripts get `bash -n` only: {shellcheck} is not installed.")
    problems: list[ValidationProblem] = []
    for directory in directories:
        problems += compose_environment_validate(Path(root), directory, validator=validator,
                                                 shellcheck=shellcheck_path)
    report(f"Checked {len(directories)} Compose environment folder(s): {len(problems)} problem(s).")
    return problems


def compose_environment_validate(root: Path, directory: str, *, validator=None,
                                 shellcheck: str | None = None) -> list[ValidationProblem]:
    """Problems of one ``environments/<env>`` folder of a Compose environment."""
    problems: list[ValidationProblem] = []
    compose_path = f"{directory}/{COMPOSE_FILE}"
    document = _load_yaml(root, compose_path, problems)
    if isinstance(document, dict):
        if validator is not None:
            problems += compose_schema_problems(compose_path, document, validator)
        problems += [ValidationProblem(compose_path, "compose-isolation", message)
                     for message in compose_isolation_problems(document)]
    elif document is not None:
        problems.append(ValidationProblem(compose_path, "compose-schema", "the file is not a mapping"))

    static_path = f"{directory}/compose/traefik/traefik.yaml"
    dynamic_path = f"{directory}/compose/traefik/dynamic.yaml"
    if (root / static_path).is_file():
        static = _load_yaml(root, static_path, problems)
        if static is not None and not (isinstance(static, dict) and isinstance(static.get("entryPoints"), dict)):
            problems.append(ValidationProblem(static_path, "traefik-config", "entryPoints is missing"))
    if (root / dynamic_path).is_file():
        dynamic = _load_yaml(root, dynamic_path, problems)
        if dynamic is not None:
            problems += [ValidationProblem(dynamic_path, "traefik-config", message)
                         for message in traefik_dynamic_problems(dynamic)]

    for template in sorted((root / directory / "compose" / "env").glob("*.env.template")):
        problems += _env_template_problems(root, directory, template.relative_to(root).as_posix())
    for script in sorted((root / directory).rglob("*.sh")):
        problems += shell_script_problems(root, script.relative_to(root).as_posix(), shellcheck=shellcheck)
    return problems


def _load_yaml(root: Path, path: str, problems: list[ValidationProblem]):
    try:
        return yaml.safe_load((root / path).read_bytes())
    except OSError as exc:
        problems.append(ValidationProblem(path, "yaml", f"cannot read the file: {exc.strerror}"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.append(ValidationProblem(path, "yaml", f"not valid YAML{where}: {exc.problem or 'parse error'}"))
    except yaml.YAMLError as exc:
        problems.append(ValidationProblem(path, "yaml", f"not valid YAML: {type(exc).__name__}"))
    return None


def _json_path(parts: Iterable) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def compose_schema_problems(path: str, document: dict, validator) -> list[ValidationProblem]:
    """Compose Specification violations, each with the JSON path of the offending field."""
    problems = []
    errors = sorted(validator.iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))
    for error in errors[:MAX_SCHEMA_ERRORS]:
        # The message names the rule (type, enum, additional property); never echo long values.
        message = error.message if len(error.message) <= 200 else error.message[:199] + "…"
        problems.append(ValidationProblem(path, "compose-schema", f"{_json_path(error.absolute_path)}: {message}"))
    if len(errors) > MAX_SCHEMA_ERRORS:
        problems.append(ValidationProblem(path, "compose-schema",
                                          f"… and {len(errors) - MAX_SCHEMA_ERRORS} more schema error(s)"))
    return problems


def _service_networks(service: dict) -> list[str]:
    networks = service.get("networks")
    if isinstance(networks, dict):
        return sorted(networks)
    if isinstance(networks, list):
        return sorted(str(name) for name in networks)
    return [] if service.get("network_mode") else ["default"]


def compose_isolation_problems(document: dict) -> list[str]:
    """The guide's project isolation through Docker networks, as messages (empty: isolated).

    A service labelled with a project id joins exactly that project's network ``proj-<id>`` and shares no
    namespace with another container (``network_mode``); a service without a project joins no project network,
    except Traefik, which routes to every project.
    """
    messages = []
    services = document.get("services") if isinstance(document.get("services"), dict) else {}
    for name, service in sorted(services.items()):
        if not isinstance(service, dict):
            continue
        labels = service.get("labels") if isinstance(service.get("labels"), dict) else {}
        project = labels.get(PROJECT_LABEL)
        networks = _service_networks(service)
        if project:
            own = f"proj-{project}"
            if service.get("network_mode"):
                messages.append(f"services.{name}: a project service must not set network_mode")
            others = [network for network in networks if network != own]
            if others:
                messages.append(f"services.{name} of project {project} joins network(s) {', '.join(others)}; "
                                f"it may join only {own}")
            if own not in networks:
                messages.append(f"services.{name} of project {project} is not on its network {own}")
        elif name != PROXY_SERVICE:
            joined = [network for network in networks if network.startswith("proj-")]
            if joined:
                messages.append(f"services.{name} is not a project service but joins {', '.join(joined)}")
    return messages


def traefik_dynamic_problems(document) -> list[str]:
    """Routers of Traefik's dynamic configuration that name a service or middleware the file does not define."""
    if not isinstance(document, dict) or not isinstance(document.get("http"), dict):
        return ["http is missing: the file defines no routers"]
    http = document["http"]
    routers = http.get("routers") if isinstance(http.get("routers"), dict) else {}
    services = http.get("services") if isinstance(http.get("services"), dict) else {}
    middlewares = http.get("middlewares") if isinstance(http.get("middlewares"), dict) else {}
    messages = []
    for name, router in sorted(routers.items()):
        if not isinstance(router, dict) or not router.get("rule"):
            messages.append(f"http.routers.{name}: no rule")
            continue
        service = router.get("service")
        if not service or (service not in services and "@" not in str(service)):
            messages.append(f"http.routers.{name}: service {service!s} is not defined")
        for middleware in router.get("middlewares") or []:
            if middleware not in middlewares and "@" not in str(middleware):
                messages.append(f"http.routers.{name}: middleware {middleware} is not defined")
    for name, service in sorted(services.items()):
        servers = (service or {}).get("loadBalancer", {}).get("servers") if isinstance(service, dict) else None
        if not servers or not all(isinstance(s, dict) and s.get("url") for s in servers):
            messages.append(f"http.services.{name}: a loadBalancer needs servers with a url")
    return messages


def _env_template_problems(root: Path, directory: str, path: str) -> list[ValidationProblem]:
    problems = []
    text = (root / path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, reference = line.partition("=")
        if not sep or not ENV_KEY_RE.match(key):
            problems.append(ValidationProblem(path, "secret-reference", f"line {number} is not KEY=age:<file>"))
            continue
        if not reference.startswith("age:"):
            # Never echo the value: it may be the plaintext secret that must not be here.
            problems.append(ValidationProblem(path, "secret-reference",
                                              f"line {number} ({key}) holds a value instead of an age: reference"))
            continue
        target = posixpath.normpath(f"{directory}/{reference[4:]}")
        if not target.startswith(directory + "/"):
            problems.append(ValidationProblem(path, "secret-reference", f"{key}: the reference leaves {directory}/"))
            continue
        try:
            head = (root / target).read_bytes()[:len(AGE_ARMOR)]
        except OSError:
            problems.append(ValidationProblem(path, "secret-reference", f"{key}: {target} does not exist"))
            continue
        if head != AGE_ARMOR.encode():
            problems.append(ValidationProblem(target, "age", f"{key}: not an ASCII-armored age file"))
    return problems


def shell_script_problems(root: Path, path: str, *, shellcheck: str | None = None) -> list[ValidationProblem]:
    """``bash -n`` (syntax) and, with ``shellcheck`` (an executable path), its warnings, one problem each."""
    problems = []
    full = str(root / path)
    result = subprocess.run(["bash", "-n", full], capture_output=True, text=True, timeout=SHELL_TIMEOUT_SECONDS)
    if result.returncode != 0:
        message = " ".join(result.stderr.replace(full, path).split())[:300] or "syntax error"
        problems.append(ValidationProblem(path, "shell-syntax", message))
        return problems
    if shellcheck:
        result = subprocess.run([shellcheck, "--format=gcc", "--shell=bash", full], capture_output=True, text=True,
                                timeout=SHELL_TIMEOUT_SECONDS)
        if result.returncode != 0:
            lines = [line.replace(full, path) for line in result.stdout.splitlines() if line.strip()]
            for line in lines[:MAX_SCHEMA_ERRORS] or ["shellcheck failed"]:
                problems.append(ValidationProblem(path, "shellcheck", line[:300]))
    return problems

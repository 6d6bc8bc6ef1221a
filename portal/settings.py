"""Settings for the Tesslate Studio GitOps portal.

Every value comes from the environment (django-environ), with embedded defaults that let
`make run` start on SQLite, inline jobs and a local git repository. With DEBUG off the portal
refuses to start without the values production needs (see ``_require``).
"""

from decimal import Decimal as _Decimal
from decimal import InvalidOperation as _InvalidDecimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local, git-ignored .env (written by `make run`) is read when present; real environment variables win.
if not env.bool("PORTAL_IGNORE_DOTENV", default=False):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VERSION = "0.1.0"

# --- core -----------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])


def _require(name: str, value) -> None:
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (see .env.example).")


if not DEBUG:
    _require("SECRET_KEY", SECRET_KEY)
    _require("ALLOWED_HOSTS", ALLOWED_HOSTS)
elif not SECRET_KEY:
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "jobs",
    "deployments",
    "projects",
    "costs",
    "live",
    "snapshots",
    "dashboard",
    "simple_history",
    "governance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from the web process (gunicorn), compressed and cached; no CDN, no extra server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # governance: history rows record the request's user
    "simple_history.middleware.HistoryRequestMiddleware",
]

# --- governance (per-environment grants, approvals, audit) -----------------------------------------
# Role permissions (groups) come from ModelBackend; the environments they apply in from the grants.
AUTHENTICATION_BACKENDS = [
    "governance.backends.EnvironmentGrantBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/ holds two kinds: Django admin pages (templates/admin/...) and the jinja2 manifest
        # templates (templates/gitops/...), which only the renderer's sandboxed jinja2 environment reads.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Form widgets and labels render with the Jinja2 templates Django ships for them (the same HTML, several times
# faster: about a third of an environment or project page); the admin's own widgets keep Django's templates.
FORM_RENDERER = "portal.form_renderer.BuiltinJinja2FormRenderer"

# --- database -------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Keep connections between requests (a new PostgreSQL connection costs a few ms per admin page); health checks
# drop a connection that died in between.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))
# The container image runs collectstatic and sets STATIC_MANIFEST=true: hashed, compressed files cached forever.
# Elsewhere (tests, `make run`) WhiteNoise serves the apps' static folders directly.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage" if STATIC_MANIFEST
                    else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:
    # WhiteNoise also serves STATIC_ROOT and warns when it is missing; an empty folder is enough here.
    try:
        Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass

LOGIN_URL = "admin:login"

# --- jobs (RQ) ------------------------------------------------------------------------------------
# Unset REDIS_URL: jobs run inline, in process, after the transaction commits (deployments.jobs).
# Set: they go to the real `gitops` queue and `manage.py rqworker gitops` runs them.
REDIS_URL = env.str("REDIS_URL", default="")
RQ_QUEUES = {
    name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 1800}
    for name in ("default", "gitops")
}
# django-rq's own admin entry would let every staff user empty queues; the dashboard is mounted at /admin/rq/
# for superusers only (portal/rq_dashboard.py), and not at all when jobs run inline.
RQ_SHOW_ADMIN_LINK = False
# Enqueue only once the database transaction commits, so a worker never reads uncommitted rows.
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": "deployments.worker.GitOpsWorker"}
# The one scheduler process (`manage.py run_scheduler`) enqueues these; see jobs/scheduler.py for the shape.
PORTAL_SCHEDULE = [
    # Queued render runs whose job was lost (Redis restarted, enqueue failed) are enqueued again; runs whose worker
    # died are failed and their environments requested again.
    {"name": "render-runs-recover", "func": "deployments.tasks.render_runs_recover_job", "queue": "gitops",
     "interval": env.int("RENDER_RECOVERY_INTERVAL", default=60)},
    # Cost Explorer actuals once a day (each request costs $0.01; environments fetched today are skipped).
    {"name": "costs-sync", "func": "costs.tasks.cost_sync_scheduled_job", "queue": "default",
     "cron": env.str("COST_SYNC_CRON", default="30 6 * * *")},
    # The live view of every Kubernetes environment, so its diagnostics are current when nobody looks.
    {"name": "live-refresh", "func": "live.tasks.live_refresh_scheduled_job", "queue": "default",
     "interval": env.int("LIVE_REFRESH_INTERVAL", default=600)},
    # Snapshot inventory (EBS + cluster VolumeSnapshots) and the daily backup audit (snapshots app).
    {"name": "snapshots-sync", "func": "snapshots.tasks.snapshot_sync_scheduled_job", "queue": "default",
     "interval": env.int("SNAPSHOT_SYNC_INTERVAL", default=3600)},
    {"name": "backup-audit", "func": "snapshots.tasks.audit_scheduled_job", "queue": "default",
     "cron": env.str("BACKUP_AUDIT_CRON", default="30 4 * * *")},
    # Hibernations whose hand-over failed are enqueued again; those whose worker died are failed (project kept).
    {"name": "hibernations-recover", "func": "snapshots.tasks.hibernations_recover_job", "queue": "default",
     "interval": env.int("RENDER_RECOVERY_INTERVAL", default=60)},
]
# A save in the admin marks the environment dirty and enqueues one render (bursts collapse into one run).
GITOPS_AUTO_RENDER = env.bool("GITOPS_AUTO_RENDER", default=True)

# --- GitOps repository ----------------------------------------------------------------------------
GITOPS_REPO_DIR = Path(env.str("GITOPS_REPO_DIR", default=str(BASE_DIR / "gitops_out" / "repo")))
GITOPS_REMOTE_URL = env.str("GITOPS_REMOTE_URL", default="")
GITOPS_BRANCH = env.str("GITOPS_BRANCH", default="main")
# The URL Argo CD / Flux clone; defaults to the push remote. Credentials in either are never rendered into a
# manifest (deployments.selectors.gitops_source_url strips them): the GitOps tool gets its own repository Secret.
GITOPS_SOURCE_URL = env.str("GITOPS_SOURCE_URL", default=GITOPS_REMOTE_URL or "https://git.example.com/tesslate/gitops.git")
GITOPS_PUSH_RETRIES = env.int("GITOPS_PUSH_RETRIES", default=5)
# How long a run waits for the one-run-at-a-time lock before it fails (seconds).
GITOPS_RUN_LOCK_TIMEOUT = env.int("GITOPS_RUN_LOCK_TIMEOUT", default=1500)
# A commit may delete at most max(FILES, SHARE × files the portal owns) files unless the change was confirmed
# (environment move or removal); a project still active in the model never loses its Namespace or PVC.
# The repository lock: "auto" (a PostgreSQL advisory lock, a file lock on SQLite) or "file" (one host only).
GITOPS_LOCK_BACKEND = env.str("GITOPS_LOCK_BACKEND", default="auto")
GITOPS_DELETION_BUDGET_FILES = env.int("GITOPS_DELETION_BUDGET_FILES", default=50)
GITOPS_DELETION_BUDGET_SHARE = env.float("GITOPS_DELETION_BUDGET_SHARE", default=0.05)
# Diffs stored on runs and shown in the admin are cut (at a file boundary) beyond this many characters.
GITOPS_DIFF_MAX_CHARS = env.int("GITOPS_DIFF_MAX_CHARS", default=1_000_000)

# --- dashboard and project pages (dashboard app) ------------------------------------------------------
# Where people browse the GitOps repository; "{path}" becomes a folder, e.g.
# https://git.example.com/org/gitops/tree/main/{path}. Empty: project pages show the folder without a link.
GITOPS_BROWSE_URL = env.str("GITOPS_BROWSE_URL", default="")

# --- Kubernetes tooling ---------------------------------------------------------------------------
KUBECTL = env.str("KUBECTL", default="kubectl")
KUBERNETES_VERSION = env.str("KUBERNETES_VERSION", default="1.32")
CRD_SCHEMA_DIR = env.str("CRD_SCHEMA_DIR", default="")
# Path to a kubeconfig for cluster reads; empty means in-cluster config or ~/.kube/config.
KUBECONFIG = env.str("KUBECONFIG", default="")

# --- Docker Compose environments ------------------------------------------------------------------
# The Compose Specification JSON schema every rendered compose.yaml is validated against (read in place; when the
# file is absent the check is skipped with a message).
COMPOSE_SCHEMA_PATH = env.str("COMPOSE_SCHEMA_PATH",
                              default=str(BASE_DIR.parent / "shared" / "schemas" / "compose-spec.json"))
SHELLCHECK = env.str("SHELLCHECK", default="shellcheck")

# --- secrets encryption ---------------------------------------------------------------------------
# Comma-separated Fernet keys, newest first. Values are encrypted with the first; all are tried to decrypt.
PORTAL_ENCRYPTION_KEYS = env.list("PORTAL_ENCRYPTION_KEYS", default=[])
if not DEBUG:
    _require("PORTAL_ENCRYPTION_KEYS", PORTAL_ENCRYPTION_KEYS)

# --- AWS ------------------------------------------------------------------------------------------
# boto3 reads its own variables (AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE, credentials).
# Write EKS environments' secret values to AWS Secrets Manager during renders (off for local use without AWS).
SECRETS_MANAGER_SYNC = env.bool("SECRETS_MANAGER_SYNC", default=False)

# --- costs (Cost Explorer) -----------------------------------------------------------------------
# Past months fetched with MONTHLY granularity (the current month comes DAILY).
COST_HISTORY_MONTHS = env.int("COST_HISTORY_MONTHS", default=6)
# A failed fetch (throttled, unreachable) is tried this many times in all, waiting BACKOFF, 2×BACKOFF, … seconds.
COST_SYNC_ATTEMPTS = env.int("COST_SYNC_ATTEMPTS", default=3)
COST_SYNC_BACKOFF_SECONDS = env.float("COST_SYNC_BACKOFF_SECONDS", default=20.0)

# --- live view (cluster reads) --------------------------------------------------------------------
# A background read of a cluster that fails is tried this many times in all, waiting BACKOFF, 2×BACKOFF, … seconds.
LIVE_REFRESH_ATTEMPTS = env.int("LIVE_REFRESH_ATTEMPTS", default=3)
LIVE_REFRESH_BACKOFF_SECONDS = env.float("LIVE_REFRESH_BACKOFF_SECONDS", default=10.0)
# EKS environments: also compare the EKS API's managed node groups with the model (needs eks:ListNodegroups and
# eks:DescribeNodegroup).
LIVE_READ_EKS = env.bool("LIVE_READ_EKS", default=True)
# --- snapshots and backup audit (snapshots app) ------------------------------------------------------
# EBS snapshot storage price (USD per GB-month, standard tier; us-east-1 list price) for the monthly cost column.
SNAPSHOT_PRICE_PER_GB_MONTH = env.str("SNAPSHOT_PRICE_PER_GB_MONTH", default="0.05")
try:
    if _Decimal(SNAPSHOT_PRICE_PER_GB_MONTH) < 0:
        raise _InvalidDecimal
except _InvalidDecimal:
    raise ImproperlyConfigured("SNAPSHOT_PRICE_PER_GB_MONTH must be a decimal number ≥ 0 (USD per GB-month).") from None
# DescribeSnapshots keeps snapshots carrying any of these tag keys (EBS CSI driver tags + the platform's).
SNAPSHOT_EBS_TAG_KEYS = env.list("SNAPSHOT_EBS_TAG_KEYS", default=[
    "ebs.csi.aws.com/cluster", "CSIVolumeSnapshotName", "tesslate.io/project-id"])
# A failing source is retried this many times, waiting BACKOFF × 2^attempt seconds, before the run fails.
SNAPSHOT_SOURCE_RETRIES = env.int("SNAPSHOT_SOURCE_RETRIES", default=3)
SNAPSHOT_SOURCE_BACKOFF_SECONDS = env.float("SNAPSHOT_SOURCE_BACKOFF_SECONDS", default=2.0)
# Controls: an active EKS project needs a completed snapshot younger than this; inventory data older than
# BACKUP_AUDIT_MAX_DATA_AGE_HOURS makes the controls that read it UNKNOWN.
BACKUP_AUDIT_MAX_SNAPSHOT_AGE_HOURS = env.int("BACKUP_AUDIT_MAX_SNAPSHOT_AGE_HOURS", default=168)
BACKUP_AUDIT_MAX_DATA_AGE_HOURS = env.int("BACKUP_AUDIT_MAX_DATA_AGE_HOURS", default=6)
# The portal's own database backups (the guide's backup script uploads them): newest object must be this recent.
BACKUP_AUDIT_DB_BUCKET = env.str("BACKUP_AUDIT_DB_BUCKET", default="")
BACKUP_AUDIT_DB_PREFIX = env.str("BACKUP_AUDIT_DB_PREFIX", default="")
BACKUP_AUDIT_DB_MAX_AGE_HOURS = env.int("BACKUP_AUDIT_DB_MAX_AGE_HOURS", default=24)
# Reports are uploaded as CSV and JSON under s3://BUCKET/PREFIX when a bucket is set.
BACKUP_AUDIT_REPORT_BUCKET = env.str("BACKUP_AUDIT_REPORT_BUCKET", default="")
BACKUP_AUDIT_REPORT_PREFIX = env.str("BACKUP_AUDIT_REPORT_PREFIX", default="backup-audit/")

# --- hibernation (projects.services.project_hibernate, snapshots.hibernation) ----------------------
# How long a hibernation waits for every VolumeSnapshot to be readyToUse (DOMAIN.md: 300 s) before it gives up and
# keeps the namespace; the cluster is polled every POLL seconds at first, doubling up to POLL_MAX.
HIBERNATION_SNAPSHOT_TIMEOUT_SECONDS = env.int("HIBERNATION_SNAPSHOT_TIMEOUT_SECONDS", default=300)
HIBERNATION_POLL_SECONDS = env.float("HIBERNATION_POLL_SECONDS", default=2.0)
HIBERNATION_POLL_MAX_SECONDS = env.float("HIBERNATION_POLL_MAX_SECONDS", default=15.0)
# A hibernation still running this long after its timeout lost its worker: recovery fails it (the project stays).
HIBERNATION_STALE_SECONDS = env.int("HIBERNATION_STALE_SECONDS", default=1800)

# --- HTTPS / deploy -------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Health probes come over plain HTTP from inside the cluster; never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Error reports (DEBUG pages, admin mails) censor secret values wherever they appear in frames or POST data.
DEFAULT_EXCEPTION_REPORTER_FILTER = "deployments.error_reports.SecretSafeExceptionReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # botocore logs request bodies (secret values) at DEBUG: keep it above that whatever LOG_LEVEL says.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "botocore": {"level": "INFO"}},
}

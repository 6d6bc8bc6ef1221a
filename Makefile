# Two commands: `make run` (portal on embedded defaults) and `make test` (whole suite on PostgreSQL + Redis).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# Custom resources are validated against the upstream CRD schemas when they sit beside the project.
export CRD_SCHEMA_DIR ?= $(abspath $(wildcard ../shared/crds))

.PHONY: run test install worker scheduler bench

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# A local, git-ignored .env: DEBUG on, a random SECRET_KEY and an encryption key for secret values.
.env:
	$(PY) -c "import secrets; from cryptography.fernet import Fernet; \
	print('DEBUG=true'); print('SECRET_KEY=' + secrets.token_urlsafe(50)); \
	print('PORTAL_ENCRYPTION_KEYS=' + Fernet.generate_key().decode())" > .env
	chmod 600 .env
	@echo "Wrote .env (git-ignored) with DEBUG=true and fresh keys."

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	@# A failed render is recorded as a failed run in the admin; the portal starts anyway so it can be inspected.
	-$(PY) manage.py render_gitops --message "Render the demo"
	$(PY) manage.py ensure_admin
	@echo "Serving http://127.0.0.1:8000/admin/ (jobs inline, SQLite, GitOps repository in gitops_out/repo)."
	$(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(VENV)/bin/lint-imports
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(PY) -m pytest $(PYTEST_ARGS)

worker: install
	$(PY) manage.py rqworker gitops default

# Exactly one per installation (rq's cron scheduler has no leader election).
scheduler: install
	$(PY) manage.py run_scheduler

# Every performance figure beside its target and floor (benchmarks/README.md). Empties Redis database 14 and
# creates its own PostgreSQL databases next to DATABASE_URL's. Takes about half an hour on 2 cores.
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
bench: install
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${BENCH_REDIS_URL:-$(BENCH_REDIS_URL)}" \
		$(PY) benchmarks/perf_report.py $(BENCH_ARGS)

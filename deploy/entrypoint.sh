#!/bin/sh
# Entry points of the portal image: web (gunicorn), worker (RQ: gitops + default queues), scheduler (exactly one
# per installation), migrate (database migrations, run once per release before the web pods start).
set -eu
cd "$(dirname "$0")/.."  # /app in the image
role="${1:-web}"
[ "$#" -gt 0 ] && shift
case "$role" in
  web)
    # gunicorn's sync workers, one request per process: requests are short (jobs do the long work) and the pod sits
    # behind the ingress controller, which buffers slow clients. Threads in a process take turns on the GIL and
    # make the slowest requests slower (benchmarks/README.md: p95 of the project list 384-400 ms with 3 workers x
    # 2 threads, 211-215 ms with 5 x 1, same CPU per request). 4 workers: 2 per CPU of the pod's limit, ~120 MiB
    # each within its 1 GiB.
    exec gunicorn portal.wsgi:application --bind "${BIND:-0.0.0.0:${PORT:-8000}}" --workers "${WEB_CONCURRENCY:-4}" \
      --threads "${WEB_THREADS:-1}" --timeout "${WEB_TIMEOUT:-120}" --access-logfile - \
      --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}" "$@" ;;
  worker)
    # Renders are serialized by the repository lock, so any number of workers on any hosts may share one Redis.
    exec python manage.py rqworker gitops default "$@" ;;
  scheduler)
    exec python manage.py run_scheduler "$@" ;;
  migrate)
    exec python manage.py migrate --noinput "$@" ;;
  manage)
    exec python manage.py "$@" ;;
  *)
    echo "usage: entrypoint.sh web|worker|scheduler|migrate|manage [args...]" >&2
    exit 64 ;;
esac

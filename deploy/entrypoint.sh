#!/bin/sh
# Entry points of the portal image: web (gunicorn), worker (RQ: gitops + default queues), scheduler (exactly one
# per installation), migrate (database migrations, run once per release before the web pods start).
set -eu
cd "$(dirname "$0")/.."  # /app in the image
role="${1:-web}"
[ "$#" -gt 0 ] && shift
case "$role" in
  web)
    exec gunicorn portal.wsgi:application --bind "${BIND:-0.0.0.0:${PORT:-8000}}" --workers "${WEB_CONCURRENCY:-3}" \
      --threads "${WEB_THREADS:-2}" --timeout "${WEB_TIMEOUT:-120}" --access-logfile - \
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

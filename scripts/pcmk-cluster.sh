#!/usr/bin/env bash
# A real Corosync + Pacemaker cluster on this machine for trying HA VMs by hand:
#   scripts/pcmk-cluster.sh DIR [NODES]    (default 2 nodes; Ctrl-C tears everything down)
# Each node is a network + mount + UTS + PID namespace with its own corosync, pacemakerd and
# libvirtd; `DIR/nsx nodeN CMD` runs a command inside a node. See tests/support/pacemaker.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.support.pacemaker "$@"

#!/usr/bin/env bash
# Prepare a Debian 12 host (no systemd) for vmfleet's end-to-end tests: Debian packages, the
# user QEMU runs as, virtlogd and libvirtd started by hand, and the `default` storage pool.
# With --ha, also the Pacemaker cluster stack the HA tests run in namespaces (no daemon of
# it is started here: tests/support/pacemaker.py starts its own per lab node).
#
# Idempotent and quick when everything is in place (about a second): it installs only what is
# missing, starts a daemon only when none answers, and never stops or restarts a daemon that
# someone else started. Run as root. Concurrent runs are serialised by a lock file.
set -euo pipefail

URI="qemu:///system"
POOL_NAME="default"
POOL_DIR="/var/lib/libvirt/images"
LOCK_FILE="/run/vmfleet-setup-host.lock"
DAEMON_WAIT_SECONDS=60

PACKAGES=(
    # libvirt and QEMU; dnsmasq-base and iptables must be there before libvirtd starts.
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
    qemu-system-x86 qemu-utils dnsmasq-base iptables
    # Foreign-arch farm targets under TCG: aarch64 (with AAVMF UEFI firmware) and ppc64le.
    qemu-system-arm qemu-efi-aarch64 qemu-system-ppc
    # Building guest images (tests/support/images.py) and talking to guests.
    mmdebstrap extlinux syslinux-common busybox-static cpio genisoimage iproute2
    openssh-client e2fsprogs fdisk kmod
    # Image preparation (`images: {prepare: …}`): virt-resize, virt-customize, guestfish.
    # libguestfs boots the host's kernel in its appliance: a container has none of its own.
    libguestfs-tools guestfish linux-image-cloud-amd64
    # The dashboard's browser test (tests/test_serve_e2e.py drives it through Playwright).
    chromium
)

# The HA tests' cluster stack (and LINSTOR-free crm_simulate): about 70 s to install.
HA_PACKAGES=(pacemaker pacemaker-cli-utils corosync resource-agents cluster-glue)
if [[ ${1:-} == --ha ]]; then
    PACKAGES+=("${HA_PACKAGES[@]}")
fi

log() { printf 'setup-host: %s\n' "$*"; }
die() {
    printf 'setup-host: error: %s\n' "$*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root"
exec 9>"$LOCK_FILE"
flock 9

install_packages() {
    local installed missing=()
    # One dpkg-query for all: it prints the packages it knows and complains about the rest.
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null |
        awk '$2 == "installed" {print $1}' || true)
    for pkg in "${PACKAGES[@]}"; do
        grep -qxF "$pkg" <<<"$installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "packages: all ${#PACKAGES[@]} installed"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "packages: installed"
}

ensure_qemu_user() {
    # Debian's libvirt runs QEMU as user libvirt-qemu, group libvirt-qemu (its built-in default
    # when there is no qemu.conf); libvirt-daemon-system, which we skip because it wants
    # systemd, would normally create them. The user's primary group is kvm, as on Debian.
    local group
    for group in kvm libvirt-qemu; do
        if ! getent group "$group" >/dev/null; then
            groupadd --system "$group"
            log "created group $group"
        fi
    done
    if ! getent passwd libvirt-qemu >/dev/null; then
        useradd --system --gid kvm --groups libvirt-qemu --home-dir /var/lib/libvirt \
            --no-create-home --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
        log "created user libvirt-qemu"
    elif [[ " $(id -nG libvirt-qemu) " != *" libvirt-qemu "* ]]; then
        usermod --append --groups libvirt-qemu libvirt-qemu
        log "added user libvirt-qemu to group libvirt-qemu"
    fi
}

ensure_kvm_device() {
    # Debian's udev rule makes /dev/kvm root:kvm 0660; without udev it may be root 0600, and
    # then libvirtd, seeing KVM come and go between probes, re-probes QEMU on every call
    # (seconds each). Set the Debian default. Whether KVM really runs guests is vmfleet's
    # own probe's business (domain_type: auto), not this script's.
    if [[ -c /dev/kvm ]]; then
        if [[ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]]; then
            chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
            log "/dev/kvm: set to root:kvm 0660"
        fi
    fi
}

ensure_dirs() {
    # Normally shipped by libvirt-daemon-system; virtlogd will not start without its log dir.
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt /var/cache/libvirt
}

# True when the pid file names a live process with the expected command name.
pidfile_alive() {
    local pidfile=$1 name=$2 pid comm
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}

libvirtd_answers() {
    timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1
}

virtlogd_answers() {
    timeout 10 virt-admin -q -c virtlogd:///system version >/dev/null 2>&1
}

ensure_virtlogd() {
    if virtlogd_answers; then
        log "virtlogd: running"
        return
    fi
    if pidfile_alive /run/virtlogd.pid virtlogd; then
        log "virtlogd: running (pid $(</run/virtlogd.pid)), waiting for its socket"
    else
        # 9>&-: a daemon must not inherit the lock, or it would hold it for as long as it runs.
        virtlogd -d 9>&-
        log "virtlogd: started"
    fi
    wait_until virtlogd_answers "virtlogd does not answer on virtlogd:///system"
}

# Retry a check every 0.2 s until it passes, or fail after DAEMON_WAIT_SECONDS.
wait_until() {
    local check=$1 failure=$2 deadline=$((SECONDS + DAEMON_WAIT_SECONDS))
    until "$check"; do
        ((SECONDS < deadline)) || die "$failure after ${DAEMON_WAIT_SECONDS}s"
        sleep 0.2
    done
}

ensure_libvirtd() {
    if libvirtd_answers; then
        log "libvirtd: running"
        return
    fi
    if pidfile_alive /run/libvirtd.pid libvirtd; then
        log "libvirtd: running (pid $(</run/libvirtd.pid)), waiting for its socket"
    else
        libvirtd -d 9>&-
        log "libvirtd: started"
    fi
    wait_until libvirtd_answers "libvirtd does not answer on $URI"
    log "libvirtd: answering on $URI"
}

pool_field() {
    virsh -q -c "$URI" pool-info "$POOL_NAME" | awk -F': +' -v key="$1" '$1 == key {print $2}'
}

ensure_pool() {
    if ! virsh -q -c "$URI" pool-info "$POOL_NAME" >/dev/null 2>&1; then
        virsh -q -c "$URI" pool-define-as "$POOL_NAME" dir --target "$POOL_DIR" >/dev/null
        log "pool $POOL_NAME: defined at $POOL_DIR"
    fi
    if [[ $(pool_field State) != running ]]; then
        # pool-build on a dir pool only creates the directory; harmless when it exists.
        virsh -q -c "$URI" pool-build "$POOL_NAME" >/dev/null
        virsh -q -c "$URI" pool-start "$POOL_NAME" >/dev/null
        log "pool $POOL_NAME: started"
    fi
    if [[ $(pool_field Autostart) != yes ]]; then
        virsh -q -c "$URI" pool-autostart "$POOL_NAME" >/dev/null
        log "pool $POOL_NAME: autostart on"
    fi
    log "pool $POOL_NAME: active"
}

install_packages
ensure_qemu_user
ensure_kvm_device
ensure_dirs
ensure_virtlogd
ensure_libvirtd
ensure_pool
log "ready"

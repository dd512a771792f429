#!/usr/bin/env bash
# Extra libvirt "hosts" on this machine: one libvirtd (with its own virtlogd) per name, each
# in its own mount namespace with private /run/libvirt, /var/lib/libvirt, /etc/libvirt,
# /var/log/libvirt and /var/cache/libvirt, so each has its own domains, pools and host UUID.
# KVM is hidden from them (an empty read-only file over /dev/kvm): they run guests under TCG.
#
#   multihost.sh start NAME    start (or restart) host NAME; prints its libvirt URI
#   multihost.sh stop NAME     stop its libvirtd only (the host "goes down"; guests keep running)
#   multihost.sh remove NAME   destroy its domains, stop its daemons, delete its files
#   multihost.sh uri NAME      print its URI
#
# VMFLEET_MULTIHOST_HIDE="/usr/bin/qemu-system-aarch64 ..." at the first start of NAME hides
# those emulators from it too (an empty, non-executable file over each), so its libvirt offers
# no guest of their architectures; restarts keep hiding them.
# Files live in $VMFLEET_MULTIHOST_DIR/NAME (default /var/tmp/vmfleet-multihost). Only
# processes named in this host's own pid files are ever stopped. Needs root.
set -euo pipefail

BASE=${VMFLEET_MULTIHOST_DIR:-/var/tmp/vmfleet-multihost}

die() { echo "multihost: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: multihost.sh start|stop|remove|uri NAME"
ACTION=$1
NAME=$2
[[ $NAME =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "bad host name '$NAME'"
DIR=$BASE/$NAME
URI="qemu+unix:///system?socket=$DIR/run/libvirt-sock"

alive() { # pidfile comm
    local pid
    [[ -r $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

stop_pid() { # pidfile comm
    local pid
    alive "$1" "$2" || return 0
    pid=$(<"$1")
    kill "$pid"
    for _ in $(seq 100); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

prepare() {
    mkdir -p "$DIR"/{run,lib/images,log/qemu,cache}
    chmod 0755 "$BASE" "$DIR" "$DIR"/lib "$DIR"/lib/images
    if [[ ! -d $DIR/etc ]]; then
        cp -a /etc/libvirt "$DIR/etc"
        # No networks of the real host (its bridges are shared); the default pool is ours.
        rm -f "$DIR"/etc/qemu/networks/autostart/* "$DIR"/etc/qemu/networks/*.xml
        rm -f "$DIR"/etc/storage/autostart/* "$DIR"/etc/storage/*.xml
        rm -rf "$DIR"/etc/qemu/*.xml
        echo "host_uuid = \"$(cat /proc/sys/kernel/random/uuid)\"" >"$DIR/etc/libvirtd.conf"
        # The namespaced QEMU needs no namespace of its own (and the /dev/kvm file would
        # confuse one).
        echo 'namespaces = [ ]' >"$DIR/etc/qemu.conf"
    fi
    [[ -f $DIR/kvm ]] || : >"$DIR/kvm"
    if [[ ! -f $DIR/hidden ]]; then
        : >"$DIR/hidden"
        for path in ${VMFLEET_MULTIHOST_HIDE:-}; do
            [[ $path == /* && -e $path ]] || die "cannot hide '$path': not an existing absolute path"
            echo "$path" >>"$DIR/hidden"
        done
        : >"$DIR/empty"
        chmod 0644 "$DIR/empty"
    fi
}

start() {
    prepare
    if ! alive "$DIR/run/libvirtd.pid" libvirtd; then
        # Everything below runs in a new mount namespace; the daemons keep it alive.
        unshare --mount --propagation private bash -euc '
            dir=$1
            mount --bind "$dir/run" /run/libvirt
            mount --bind "$dir/lib" /var/lib/libvirt
            mount --bind "$dir/etc" /etc/libvirt
            mount --bind "$dir/log" /var/log/libvirt
            mount --bind "$dir/cache" /var/cache/libvirt
            if [[ -e /dev/kvm ]]; then
                mount --bind "$dir/kvm" /dev/kvm
                mount -o remount,bind,ro /dev/kvm
            fi
            while read -r path; do
                mount --bind "$dir/empty" "$path"
                mount -o remount,bind,ro "$path"
            done <"$dir/hidden"
            if ! [[ -r /run/libvirt/virtlogd.pid && -d /proc/$(cat /run/libvirt/virtlogd.pid) ]]; then
                virtlogd -d -p /run/libvirt/virtlogd.pid 9>&-
            fi
            libvirtd -d -p /run/libvirt/libvirtd.pid 9>&-
        ' multihost "$DIR"
    fi
    for _ in $(seq 150); do
        if timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; then
            break
        fi
        sleep 0.2
    done
    timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1 || die "$NAME: libvirtd does not answer"
    if ! virsh -q -c "$URI" pool-info default >/dev/null 2>&1; then
        virsh -q -c "$URI" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
        virsh -q -c "$URI" pool-autostart default >/dev/null
    fi
    if [[ $(virsh -q -c "$URI" pool-info default | awk -F': +' '$1 == "State" {print $2}') != running ]]; then
        virsh -q -c "$URI" pool-start default >/dev/null
    fi
    echo "$URI"
}

remove() {
    if alive "$DIR/run/libvirtd.pid" libvirtd; then
        for dom in $(virsh -q -c "$URI" list --all --name); do
            virsh -q -c "$URI" destroy "$dom" >/dev/null 2>&1 || true
            virsh -q -c "$URI" undefine --nvram "$dom" >/dev/null 2>&1 ||
                virsh -q -c "$URI" undefine "$dom" >/dev/null 2>&1 || true
        done
    fi
    stop_pid "$DIR/run/libvirtd.pid" libvirtd
    stop_pid "$DIR/run/virtlogd.pid" virtlogd
    rm -rf "$DIR"
}

case $ACTION in
start) start ;;
stop) stop_pid "$DIR/run/libvirtd.pid" libvirtd ;;
remove) [[ -d $DIR ]] && remove || true ;;
uri) echo "$URI" ;;
*) die "unknown action '$ACTION'" ;;
esac

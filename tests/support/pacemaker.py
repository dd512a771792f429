"""A real Corosync + Pacemaker cluster on this machine, for end-to-end tests of HA VMs.

Each node is a network + mount + UTS + PID namespace with its own corosync, pacemakerd,
virtlogd and libvirtd (KVM hidden: guests run under TCG), its own /run, /dev/shm and
private state directories under the lab folder; the nodes talk over a bridge in a fabric
namespace (addresses exist only inside the namespaces made here). Fencing is a cluster-glue
`external/` plugin, visible only inside the nodes, that asks the harness to power-cut the
node: SIGKILL of the node's PID 1, which ends every process of the node, qemu included.
`power_cut` does the same from a test. Teardown ends only the node PIDs recorded at start.

Measured recipe: ../shared/pacemaker-lab (README). Command line: scripts/pcmk-cluster.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmfleet.drivers.pacemaker import ClusterStatus, parse_status

PACKAGES = ("pacemaker", "corosync", "resource-agents", "cluster-glue")
STATE_DIRS = (
    "etc/corosync", "var/lib/corosync", "var/lib/pacemaker", "var/log/pacemaker",
    "var/log/corosync", "etc/libvirt", "var/lib/libvirt", "var/log/libvirt", "var/cache/libvirt",
)  # fmt: skip
PLUGIN_DIR = Path("/usr/lib/stonith/plugins/external")
ONLINE_TIMEOUT = 120.0

INNER = """#!/bin/bash
# PID 1 of a lab node: private /run, /dev/shm and state directories, then reap forever.
set -e
N=$1; S=$2
hostname "$N"
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/crm /run/resource-agents /run/lock /run/libvirt
chown hacluster:haclient /run/crm; chmod 750 /run/crm
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
for d in {dirs}; do mount --bind "$S/${{d//\\//-}}" "/$d"; done
mount --bind "$S/hosts" /etc/hosts
mount --bind "$S/kvm" /dev/kvm && mount -o remount,bind,ro /dev/kvm
mount --bind "$S/stonith-external" {plugins}
echo ready > "$S/ready"
set +e
trap '' TERM
exec bash -c 'while :; do sleep 3600 & wait; done'
"""

START = """cd /
setsid corosync -f </dev/null >/var/log/corosync/corosync.stdout 2>&1 &
for i in $(seq 100); do corosync-cfgtool -s >/dev/null 2>&1 && break; sleep 0.1; done
setsid pacemakerd </dev/null >/var/log/pacemaker/pacemakerd.stdout 2>&1 &
virtlogd -d
libvirtd -d --listen
for i in $(seq 200); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
# a `default` pool, as on any vmfleet host (the node's /var/lib/libvirt is its own)
virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
virsh -q -c qemu:///system pool-build default >/dev/null
virsh -q -c qemu:///system pool-start default >/dev/null
"""

PLUGIN = """#!/bin/sh
# Lab fencing: ask the harness to power-cut node $2 (SIGKILL of its PID 1).
R={fence_dir}
case "$1" in
gethosts) echo $hostlist; exit 0;;
on) exit 1;;
off|reset)
  rm -f "$R/$2.done"; touch "$R/$2.req"
  i=0; while [ $i -lt 60 ]; do [ -f "$R/$2.done" ] && exit 0; sleep 0.5; i=$((i+1)); done; exit 1;;
status) [ -d "$R" ]; exit $?;;
getconfignames) echo hostlist; exit 0;;
getinfo-devid|getinfo-devname) echo vmf-lab-fence; exit 0;;
getinfo-devdescr) echo "power-cut a lab node"; exit 0;;
getinfo-devurl) echo none; exit 0;;
getinfo-xml) cat <<EOX
<parameters><parameter name="hostlist" unique="0" required="1">
<content type="string"/><shortdesc lang="en">Hostlist</shortdesc></parameter></parameters>
EOX
  exit 0;;
*) exit 1;;
esac
"""


def missing_tools() -> list[str]:
    need = ("corosync", "pacemakerd", "crm_mon", "cibadmin", "nsenter", "unshare", "ip")
    return [tool for tool in need if shutil.which(tool) is None]


def ensure_installed() -> None:
    """Install the cluster stack (scripts/setup-host.sh --ha) when it is missing."""
    if missing_tools():
        script = Path(__file__).resolve().parents[2] / "scripts" / "setup-host.sh"
        subprocess.run(["bash", str(script), "--ha"], check=True, timeout=900)


@dataclass
class Node:
    name: str
    index: int
    state: Path
    holder: subprocess.Popen[bytes] | None = None
    init_pid: int | None = None

    @property
    def alive(self) -> bool:
        return self.init_pid is not None and Path(f"/proc/{self.init_pid}").exists()


@dataclass
class Lab:
    """N nodes `node1..nodeN`; `nsx` is a script that runs a command inside a node."""

    root: Path
    size: int = 2
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    nodes: list[Node] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    @property
    def fabric(self) -> str:
        return f"vmfha{self.tag}-pf"

    def netns(self, node: Node) -> str:
        return f"vmfha{self.tag}-n{node.index}"

    @property
    def nsx(self) -> Path:
        return self.root / "nsx"

    @property
    def fence_dir(self) -> Path:
        return self.root / "fence"

    @property
    def plugin(self) -> str:
        return f"vmflab{self.tag}"

    # --- bring-up --------------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.fence_dir.mkdir(exist_ok=True)
        (self.root / "shared").mkdir(exist_ok=True)
        (self.root / "inner.sh").write_text(
            INNER.format(dirs=" ".join(STATE_DIRS), plugins=PLUGIN_DIR)
        )
        self.nsx.write_text(
            "#!/bin/sh\n# nsx NODE CMD...: run CMD inside a lab node\n"
            f'N=$1; shift; exec nsenter -t "$(cat {self.root}/$N/init.pid)" -m -u -n -p -- "$@"\n'
        )
        self.nsx.chmod(0o755)
        self.nodes = [Node(f"node{i}", i, self.root / f"node{i}") for i in range(1, self.size + 1)]
        self._network()
        for node in self.nodes:
            self.boot(node)
        self._watcher = threading.Thread(target=self._serve_fencing, daemon=True)
        self._watcher.start()
        self.wait_online([n.name for n in self.nodes])

    def _network(self) -> None:
        ip = ["ip", "-n", self.fabric]
        _run(["ip", "netns", "add", self.fabric])
        _run([*ip, "link", "set", "lo", "up"])
        _run([*ip, "link", "add", "br0", "type", "bridge"])
        _run([*ip, "link", "set", "br0", "up"])
        for node in self.nodes:
            ns = self.netns(node)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # the pair is made inside the namespaces, never in the root namespace
            _run([*ip, "link", "add", f"vn{node.index}", "type", "veth", "peer", "name", "eth0",
                  "netns", ns])  # fmt: skip
            _run([*ip, "link", "set", f"vn{node.index}", "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"10.99.0.{node.index}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _node_files(self, node: Node) -> None:
        state = node.state
        shutil.rmtree(state, ignore_errors=True)
        for d in STATE_DIRS:
            (state / d.replace("/", "-")).mkdir(parents=True)
        members = "".join(
            f"  node {{\n    name: {n.name}\n    nodeid: {n.index}\n"
            f"    ring0_addr: 10.99.0.{n.index}\n  }}\n"
            for n in self.nodes
        )
        two_node = "  two_node: 1\n" if self.size == 2 else ""
        (state / "etc-corosync/corosync.conf").write_text(
            f"totem {{\n  version: 2\n  cluster_name: vmflab{self.tag}\n  transport: knet\n"
            "  crypto_cipher: none\n  crypto_hash: none\n  token: 3000\n}\n"
            "logging {\n  to_logfile: yes\n  logfile: /var/log/corosync/corosync.log\n"
            "  to_stderr: no\n  to_syslog: no\n}\n"
            "uidgid {\n  gid: haclient\n}\n"
            f"quorum {{\n  provider: corosync_votequorum\n{two_node}}}\n"
            f"nodelist {{\n{members}}}\n"
        )
        for d in ("blackbox", "cib", "cores", "pengine"):
            (state / "var-lib-pacemaker" / d).mkdir()
        (state / "var-log-pacemaker/bundles").mkdir()
        _run(["chown", "-R", "hacluster:haclient", str(state / "var-lib-pacemaker"),
              str(state / "var-log-pacemaker")])  # fmt: skip
        libvirt = state / "etc-libvirt"
        for name in ("libvirt.conf", "libvirt-admin.conf"):
            if Path("/etc/libvirt", name).exists():
                shutil.copy(Path("/etc/libvirt", name), libvirt / name)
        (libvirt / "qemu").mkdir()
        (libvirt / "libvirtd.conf").write_text(
            f'host_uuid = "00000000-0000-4000-8000-{node.index:012d}"\n'
            'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\nlisten_addr = "0.0.0.0"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
        )
        (libvirt / "qemu.conf").write_text(
            'namespaces = [ ]\nuser = "root"\ngroup = "root"\ndynamic_ownership = 0\n'
            'security_driver = "none"\ncgroup_controllers = [ ]\n'
        )
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"10.99.0.{n.index} {n.name}\n" for n in self.nodes
        )
        (state / "hosts").write_text(hosts)
        (state / "kvm").write_text("")
        (state / "kvm").chmod(0o444)
        plugins = state / "stonith-external"
        shutil.copytree(PLUGIN_DIR, plugins)
        plugin = plugins / self.plugin
        plugin.write_text(PLUGIN.format(fence_dir=self.fence_dir))
        plugin.chmod(0o755)

    def boot(self, node: Node) -> None:
        """Start (or restart after a power cut) one node with fresh state."""
        self._node_files(node)
        log = (node.state / "inner.log").open("wb")
        node.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns(node), "unshare", "--mount", "--uts", "--pid",
             "--fork", "--mount-proc", "--propagation", "private",
             "bash", str(self.root / "inner.sh"), node.name, str(node.state)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        _wait(lambda: (node.state / "ready").exists(), 10, f"{node.name} to set up")
        children = Path(f"/proc/{node.holder.pid}/task/{node.holder.pid}/children")
        _wait(lambda: children.read_text().strip() != "", 5, f"{node.name}'s PID 1")
        node.init_pid = int(children.read_text().split()[0])
        (node.state / "init.pid").write_text(str(node.init_pid))
        _run([str(self.nsx), node.name, "bash", "-c", START], timeout=60)

    def wait_online(self, names: Sequence[str], *, timeout: float = ONLINE_TIMEOUT) -> None:
        def online() -> bool:
            try:
                status = self.status()
            except subprocess.CalledProcessError:
                return False
            up = {n.name for n in status.nodes if n.online}
            return set(names) <= up

        _wait(online, timeout, f"nodes {', '.join(names)} online")

    # --- use -------------------------------------------------------------------------------

    def run(self, node: str, argv: Sequence[str], *, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.nsx), node, *argv], capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv, result.stdout, result.stderr
            )
        return result.stdout

    def live_node(self) -> str:
        return next(n.name for n in self.nodes if n.alive)

    def status(self) -> ClusterStatus:
        out = self.run(self.live_node(), ["crm_mon", "--output-as=xml", "--one-shot", "--inactive"])
        return parse_status(out)

    def domains(self) -> dict[str, list[str]]:
        """What each live node's libvirt runs (VirtualDomain starts transient domains)."""
        return {
            n.name: self.run(n.name, ["virsh", "-c", "qemu:///system", "list", "--name"]).split()
            for n in self.nodes
            if n.alive
        }

    def power_cut(self, name: str) -> None:
        """SIGKILL the node's PID 1: every process of the node ends at once."""
        node = next(n for n in self.nodes if n.name == name)
        self._kill(node)

    def _kill(self, node: Node) -> None:
        pid = node.init_pid
        if pid is None or not _is_ours(pid, self.root):
            return
        os.kill(pid, signal.SIGKILL)
        if node.holder is not None:
            node.holder.wait(timeout=30)

    def _serve_fencing(self) -> None:
        while not self._stop.is_set():
            for request in self.fence_dir.glob("*.req"):
                name = request.stem
                node = next((n for n in self.nodes if n.name == name), None)
                if node is not None:
                    self._kill(node)
                    self.fenced.append(name)
                request.unlink(missing_ok=True)
                (self.fence_dir / f"{name}.done").touch()
            self._stop.wait(0.2)

    # --- teardown --------------------------------------------------------------------------

    def stop(self) -> None:
        """End the nodes this lab started (recorded PIDs only), the watcher, the namespaces."""
        self._stop.set()
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                self._kill(node)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for ns in [self.netns(n) for n in self.nodes] + [self.fabric]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _is_ours(pid: int, root: Path) -> bool:
    """A PID is a lab node's PID 1 only while it runs our reaper loop (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"sleep 3600 & wait" in cmdline or str(root / "inner.sh").encode() in cmdline


def _run(argv: Sequence[str], *, timeout: float = 30) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _wait(done: object, timeout: float, what: str) -> None:
    assert callable(done)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@contextlib.contextmanager
def lab(root: Path, size: int = 2) -> Iterator[Lab]:
    """A running cluster of `size` nodes, always torn down afterwards."""
    ensure_installed()
    cluster = Lab(root=root, size=size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`up DIR N` keeps a cluster running until Ctrl-C (then tears it down)."""
    parser = argparse.ArgumentParser(prog="pcmk-cluster")
    parser.add_argument("dir", type=Path)
    parser.add_argument("nodes", type=int, nargs="?", default=2)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with lab(args.dir, args.nodes) as cluster:
        print(f"{args.nodes} nodes online after {time.monotonic() - started:.1f} s")
        print(f"run commands inside a node with: {cluster.nsx} node1 crm_mon -1")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

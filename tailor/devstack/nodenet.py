"""The real node's network on the host, and putting the host back as it was.

A real node changes the machine, not only the stack's directory: a bridge for the pods, kernel
settings (the kubelet's and forwarding), the rules kube-proxy and portmap write, a few system
directories containerd and CNI create on first use. ``setup`` records what it finds before
changing anything; ``teardown`` undoes exactly that once the node's processes are gone, and
``leftovers`` lists anything that is still there (`tailor dev down` fails when it is not empty).

One real node per machine: kube-proxy's rules and the bridge are host-wide. The bridge's alias
names the stack that owns it, so a second stack is told which one to stop instead of sharing.

Addresses: the pods' subnet is ours alone, chosen apart from podman's 10.88.0.0/16 and from the
stack's Service (10.0.0.0/24) and kwok (10.244.0.0/16) ranges. The bridge's gateway address is
the node's address: where the kubelet serves, and where host services pods need listen.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tailor.devstack.errors import DevstackError, NodeBusy

BRIDGE = "tailor0"
POD_SUBNET = "10.243.0.0/24"
GATEWAY = "10.243.0.1"
NODE_NAME = "tailor-node"

#: Kernel settings the node may change: the bridge needs forwarding for pod -> Service -> pod;
#: the kubelet sets the vm./kernel. ones at start (its "kernel tunables"); bridged traffic must
#: pass netfilter for Service replies between pods on the bridge.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.conf.all.route_localnet",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
#: Values the node needs while it runs.
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}

#: System directories that containerd's shims, CNI's result cache or the kubelet create on
#: first use even though everything else is configured under the stack's home. Removed at
#: teardown when they did not exist before and are empty.
SYSTEM_DIRS = (
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet",
    "/var/lib/kube-proxy",
    "/etc/kubernetes",
    "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
    "/usr/libexec/kubernetes/kubelet-plugins/volume",
    "/usr/libexec/kubernetes/kubelet-plugins",
    "/usr/libexec/kubernetes",
)
#: Sockets the kubelet opens at fixed paths (its device manager ignores --root-dir); removed
#: with their directory when that did not exist before.
SYSTEM_SOCKETS = ("/var/lib/kubelet/device-plugins/kubelet.sock",)
#: containerd puts containers without a pod cgroup parent (cgroupsPerQOS: false) in a cgroup
#: named after its namespace; runc removes each container's cgroup, not this parent.
CGROUP_PARENT = "k8s.io"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: iptables chains the node makes: the kubelet's own (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
#: KUBE-IPTABLES-HINT), any kube-proxy left, and portmap's for hostPorts (CNI-HOSTPORT-*, and
#: CNI-DN-* per pod, removed by CNI DEL). Every such chain that was not there before is removed.
IPTABLES = ("iptables", "ip6tables")
CHAIN_PREFIXES = ("KUBE-", "CNI-HOSTPORT-", "CNI-DN-")


@dataclass(frozen=True)
class Snapshot:
    """What the host looked like before the node changed it."""

    sysctls: dict[str, str]
    missing_dirs: list[str]
    #: "iptables filter" -> the node's kind of chains (CHAIN_PREFIXES) that table had.
    chains: dict[str, list[str]]
    #: nftables tables ("ip nat") and chains ("ip nat PREROUTING") that existed: iptables-nft
    #: creates tables and base chains on first use and leaves them, empty, after the rules go.
    nft_tables: list[str]
    nft_chains: list[str]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "sysctls": self.sysctls,
            "missing_dirs": self.missing_dirs,
            "chains": self.chains,
            "nft_tables": self.nft_tables,
            "nft_chains": self.nft_chains,
        }
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> Snapshot | None:
        try:
            data = json.loads(path.read_text())
            return cls(
                sysctls=dict(data["sysctls"]),
                missing_dirs=list(data["missing_dirs"]),
                chains={key: list(chains) for key, chains in data["chains"].items()},
                nft_tables=list(data["nft_tables"]),
                nft_chains=list(data["nft_chains"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    @classmethod
    def take(cls) -> Snapshot:
        return cls(
            sysctls={name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None},
            missing_dirs=[path for path in (*SYSTEM_DIRS, *_cgroup_parents()) if not os.path.exists(path)],
            chains={key: sorted(chains) for key, chains in _node_chains().items()},
            nft_tables=sorted(_nft_ruleset().tables),
            nft_chains=sorted(_nft_ruleset().chains),
        )


def _cgroup_parents() -> list[str]:
    """containerd's parent cgroup in every mounted hierarchy (whether it exists or not)."""
    try:
        return [str(entry / CGROUP_PARENT) for entry in sorted(CGROUP_ROOT.iterdir()) if entry.is_dir()]
    except OSError:
        return []


def _save_output(binary: str) -> str:
    result = subprocess.run([f"{binary}-save"], capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else ""


def _node_chains() -> dict[str, set[str]]:
    """ "<binary> <table>" -> chains named like the node's (CHAIN_PREFIXES), from iptables-save
    and ip6tables-save."""
    found: dict[str, set[str]] = {}
    for binary in IPTABLES:
        table = ""
        for line in _save_output(binary).splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                found.setdefault(f"{binary} {table}", set()).add(line[1:].split()[0])
    return found


def _remove_new_chains(before: dict[str, list[str]]) -> list[str]:
    """Delete every chain of the node's kind not listed in ``before``, and the rules that jump to it."""
    done = []
    for binary in IPTABLES:
        table = ""
        rules: dict[str, list[list[str]]] = {}
        for line in _save_output(binary).splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith("-A "):
                rules.setdefault(table, []).append(shlex.split(line)[1:])
        for key, chains in _node_chains().items():
            if not key.startswith(binary + " "):
                continue
            table = key.split(" ", 1)[1]
            new = chains - set(before.get(key, []))
            if not new:
                continue
            for rule in rules.get(table, []):  # jumps from other chains into the new ones
                if rule[0] not in new and any(
                    rule[i + 1] in new for i, arg in enumerate(rule[:-1]) if arg == "-j"
                ):
                    subprocess.run([binary, "-t", table, "-D", *rule], capture_output=True, check=False)
            for chain in sorted(new):
                subprocess.run([binary, "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in sorted(new):
                subprocess.run([binary, "-t", table, "-X", chain], capture_output=True, check=False)
            done.append(f"removed {binary} {table} chains {', '.join(sorted(new))}")
    return done


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise DevstackError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def bridge_owner() -> str | None:
    """The owner recorded on the bridge (a stack's directory), or None when there is no bridge."""
    try:
        return Path(f"/sys/class/net/{BRIDGE}/ifalias").read_text().strip()
    except OSError:
        return None


def _conflicting_routes() -> list[str]:
    """Routes to an overlapping network through another interface (someone else's network)."""
    ours = ipaddress.ip_network(POD_SUBNET)
    routes = json.loads(_ip("-j", "route", "show", "table", "all").stdout or "[]")
    conflicts = []
    for route in routes:
        destination = route.get("dst", "")
        if route.get("dev") == BRIDGE or destination in ("default", "") or ":" in destination:
            continue
        try:
            network = ipaddress.ip_network(destination if "/" in destination else f"{destination}/32")
        except ValueError:
            continue
        if network.overlaps(ours) and network.prefixlen > 0:
            conflicts.append(f"{destination} dev {route.get('dev')}")
    return conflicts


def setup(owner: str, record: Path) -> None:
    """Create the pods' bridge with the gateway address and the node's kernel settings.

    Idempotent for the same ``owner``; refuses when another stack owns the node.
    """
    if os.geteuid() != 0:
        raise DevstackError(
            "a real node needs root (containerd, the kubelet and kube-proxy manage mounts, "
            "network interfaces and firewall rules): run `tailor dev up --node real` as root"
        )
    current = bridge_owner()
    if current is not None and current != owner:
        raise NodeBusy(
            f"this machine's real node belongs to the stack in {current or '(unknown)'} "
            f"(bridge {BRIDGE}): stop it first (`tailor dev --home <its parent> --name <its name> down`)"
        )
    conflicts = _conflicting_routes()
    if conflicts:
        raise DevstackError(
            f"the real node's pod subnet {POD_SUBNET} overlaps routes already on this machine: "
            f"{'; '.join(conflicts)}"
        )
    if Snapshot.load(record) is None:  # an interrupted earlier run keeps its older snapshot
        Snapshot.take().save(record)
    if current is None:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("link", "set", BRIDGE, "alias", owner)
    network = ipaddress.ip_network(POD_SUBNET)
    if f"inet {GATEWAY}/" not in _ip("-o", "addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", f"{GATEWAY}/{network.prefixlen}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for name, value in NODE_SYSCTLS.items():
        if read_sysctl(name) not in (None, value):
            write_sysctl(name, value)


def teardown(owner: str, record: Path) -> list[str]:
    """Delete the bridge (when ours), restore kernel settings, remove the system directories
    the node created; return what was done. Run after every node process has stopped."""
    done = []
    if bridge_owner() == owner:
        _ip("link", "del", BRIDGE)
        done.append(f"deleted bridge {BRIDGE}")
    snapshot = Snapshot.load(record)
    if snapshot is None:
        return done
    for name, value in snapshot.sysctls.items():
        now = read_sysctl(name)
        if now is not None and now != value:
            write_sysctl(name, value)
            done.append(f"{name} {now} -> {value}")
    done += _remove_new_chains(snapshot.chains)
    done += _remove_new_empty_nft_objects(snapshot)
    if new_chains(record):
        return done  # keep the snapshot: `leftovers` reports them, the next teardown retries
    for socket_path in SYSTEM_SOCKETS:
        if os.path.dirname(socket_path) in snapshot.missing_dirs and _is_socket(socket_path):
            os.unlink(socket_path)
    for path in snapshot.missing_dirs:  # listed children first
        try:
            os.rmdir(path)  # an empty cgroup is removed the same way
            done.append(f"removed {path}")
        except OSError:
            pass  # absent, or not empty: then something else uses it now
    record.unlink(missing_ok=True)
    return done


@dataclass(frozen=True)
class _Ruleset:
    tables: set[str]
    chains: set[str]
    #: Tables and chains that hold something (rules, chains, sets, maps).
    used: set[str]


def _nft_ruleset() -> _Ruleset:
    """The ip and ip6 tables and chains of ``nft -j list ruleset`` and which are in use."""
    result = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=False)
    try:
        objects = json.loads(result.stdout)["nftables"]
    except (ValueError, KeyError):
        return _Ruleset(set(), set(), set())
    tables, chains, used = set(), set(), set()
    for item in objects:
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict) or body.get("family") not in ("ip", "ip6"):
            continue
        table = f"{body['family']} {body.get('table', body.get('name'))}"
        if kind == "table":
            tables.add(table)
        elif kind == "chain":
            chains.add(f"{table} {body['name']}")
            used.add(table)
        elif kind == "rule":
            used.add(f"{table} {body['chain']}")
            used.add(table)
        elif kind in ("set", "map", "flowtable", "counter"):
            used.add(table)
    return _Ruleset(tables, chains, used)


def _remove_new_empty_nft_objects(snapshot: Snapshot) -> list[str]:
    """Delete empty chains, then empty tables, that were not there before the node."""
    done = []
    ruleset = _nft_ruleset()
    for chain in sorted(ruleset.chains - set(snapshot.nft_chains) - ruleset.used):
        family, table, name = chain.split(" ", 2)
        subprocess.run(["nft", "delete", "chain", family, table, name], capture_output=True, check=False)
        done.append(f"removed empty nftables chain {chain}")
    ruleset = _nft_ruleset()
    for table in sorted(ruleset.tables - set(snapshot.nft_tables) - ruleset.used):
        subprocess.run(["nft", "delete", "table", *table.split(" ", 1)], capture_output=True, check=False)
        done.append(f"removed empty nftables table {table}")
    return done


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


# --- what is left -------------------------------------------------------------------------


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or below any of ``roots`` (from /proc/mounts, octal escapes decoded)."""
    prefixes = [str(root.resolve()) for root in roots]
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        if any(point == prefix or point.startswith(prefix + "/") for prefix in prefixes):
            found.append(point)
    return found


def unmount_all(points: Iterable[str]) -> None:
    """Unmount deepest first (lazily: a mount a dead process still pins is detached anyway)."""
    for point in sorted(points, key=lambda p: p.count("/"), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def node_interfaces() -> list[str]:
    """The bridge and any interface enslaved to it (the pods' veth ends)."""
    found = []
    for entry in Path("/sys/class/net").iterdir():
        if entry.name == BRIDGE or (entry / "master").resolve().name == BRIDGE:
            found.append(entry.name)
    return sorted(found)


def processes_mentioning(needle: str) -> list[int]:
    """Live processes whose command line contains ``needle`` (e.g. our containerd's socket)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the containers under a shim)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def nft_tables() -> list[str]:
    """``family name`` of every nftables table (kube-proxy's are ``ip kube-proxy``, ``ip6 kube-proxy``)."""
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return [
        line.removeprefix("table ").strip()
        for line in result.stdout.splitlines()
        if line.startswith("table ")
    ]


def new_chains(record: Path) -> list[str]:
    """The node's kind of iptables chains that were not there when ``record``'s snapshot was
    taken (all of them when there is no snapshot)."""
    snapshot = Snapshot.load(record)
    before = snapshot.chains if snapshot is not None else {}
    return sorted(
        f"{key} {chain}"
        for key, chains in _node_chains().items()
        for chain in chains - set(before.get(key, []))
    )

"""containerd (Debian's 1.6, CRI plugin) for the real node: its own root, state and socket.

Everything it keeps lives under the stack's home, never the system's /var/lib/containerd or
/run/containerd (only the shims' sockets go to /run/containerd/s, fixed in 1.6; they go away
with the shims). Settings this machine needs (docs/devstack.md):

- ``restrict_oom_score_adj``: the sandbox may not lower oom_score_adj; without it the pause
  container dies as runc starts it;
- runc, not crun (crun refuses hybrid cgroup v1);
- the sandbox image comes from the stack's registry (the public pause image cannot be pulled);
- images are pulled over plain HTTP from the stack's registry through the hosts directory
  (``certs.d``); the registry names users' charts refer to by default (ghcr.io, docker.io, ...)
  resolve to the same local registry, so nothing is fetched from outside.

Stopping it first removes every pod sandbox through the CRI (crictl), which stops the
containers and runs CNI DEL (veth, addresses, hostPort rules), then sweeps what a crash would
have left: shims, their containers, mounts under the stack's home.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tailor.devstack import nodenet, procs, programs
from tailor.devstack.components.base import Component
from tailor.devstack.components.registry import Registry

#: Registries whose images come from the stack's own registry instead (same repository path).
MIRRORED_REGISTRIES = ("ghcr.io", "docker.io", "registry.k8s.io", "quay.io")
CNI_NETWORK = "tailor"


def cni_config(bin_dir: Path, ipam_dir: Path) -> dict[str, object]:
    """The node's CNI chain: a bridge (created beforehand by nodenet, with the gateway address),
    host-local addresses from the pod subnet, hostPort mappings, the pod's loopback."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": nodenet.BRIDGE,
                # The gateway address is on the bridge already and forwarding is set by nodenet;
                # no masquerade: pods only talk to the host, each other and Services.
                "isGateway": False,
                "ipMasq": False,
                # A pod reaching itself through its Service comes back through the bridge.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": nodenet.POD_SUBNET, "gateway": nodenet.GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0", "gw": nodenet.GATEWAY}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def hosts_toml(registry: str) -> str:
    """certs.d/<host>/hosts.toml: pull and resolve from the stack's registry over plain HTTP,
    and nowhere else (``server`` is the same registry, so there is no fallback outside)."""
    return (
        f'server = "http://{registry}"\n\n[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
    )


class Containerd(Component):
    name = "containerd"
    depends_on = ("registry",)
    #: The CRI streaming server (kubectl exec/attach/port-forward) on loopback.
    port_keys = ("containerd-stream",)
    start_timeout = 30.0

    @property
    def socket(self) -> Path:
        return self.data_dir / "containerd.sock"

    @property
    def endpoint_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def config(self) -> Path:
        return self.data_dir / "config.toml"

    @property
    def root(self) -> Path:
        return self.data_dir / "root"

    @property
    def state(self) -> Path:
        return self.data_dir / "state"

    @property
    def crictl_config(self) -> Path:
        return self.data_dir / "crictl.yaml"

    def endpoint(self) -> str:
        return str(self.socket)

    def _registry(self) -> Registry:
        return Registry(self.context)

    def prepare(self) -> None:
        tools = self.context.tools.node
        registry = self._registry()
        cni_dir, hosts_dir = self.data_dir / "cni", self.data_dir / "certs.d"
        cni_dir.mkdir(exist_ok=True)
        (cni_dir / f"10-{CNI_NETWORK}.conflist").write_text(
            json.dumps(cni_config(tools.cni_bin_dir, self.data_dir / "ipam"), indent=2)
        )
        for host in (registry.address(), *MIRRORED_REGISTRIES):
            directory = hosts_dir / host
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts.toml").write_text(hosts_toml(registry.address()))
        self.config.write_text(
            _CONFIG.format(
                root=self.root,
                state=self.state,
                socket=self.socket,
                sandbox_image=registry.pause_image(),
                stream_port=self.context.port("containerd-stream"),
                runc=tools.runc,
                cni_bin=tools.cni_bin_dir,
                cni_conf=cni_dir,
                hosts=hosts_dir,
            )
        )
        self.crictl_config.write_text(
            f"runtime-endpoint: {self.endpoint_url}\nimage-endpoint: {self.endpoint_url}\ntimeout: 30\n"
        )

    def argv(self) -> list[str]:
        return [str(self.context.tools.node.containerd), "--config", str(self.config)]

    def crictl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # From the cache directly: stopping must never start a build.
        crictl = programs.crictl().bin_dir / "crictl"
        return subprocess.run(
            [str(crictl), "--config", str(self.crictl_config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def healthy(self) -> bool:
        """The CRI answers and reports its runtime and network ready (CNI config loaded)."""
        if not self.socket.exists():
            return False
        result = self.crictl("info", "-o", "json", timeout=10)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip()[-300:])
        conditions = json.loads(result.stdout)["status"]["conditions"]
        return all(c["status"] for c in conditions if c["type"] in ("RuntimeReady", "NetworkReady"))

    def stop(self) -> None:
        if self.is_running():
            # Every sandbox: stop its containers, CNI DEL, unmount, delete (the kubelet is stopped
            # first, so nothing recreates them).
            result = self.crictl("rmp", "--all", "--force", timeout=120)
            if result.returncode != 0:
                with self.log.open("a") as sink:
                    sink.write(f"crictl rmp --all --force failed: {result.stderr}\n")
        super().stop()
        self.sweep()

    def shims(self) -> list[int]:
        """Pids of this containerd's shims (one per pod sandbox); they outlive containerd."""
        return [
            pid
            for pid in nodenet.processes_mentioning(f"-address {self.socket}")
            if "containerd-shim" in _cmdline(pid)
        ]

    def pod_processes(self) -> list[int]:
        """The shims and everything below them: pause processes and containers."""
        shims = self.shims()
        return [*shims, *(child for shim in shims for child in nodenet.descendants(shim))]

    def sweep(self) -> None:
        """Kill shims of this containerd (and their containers) and unmount what is left under
        its directories: what a crash or a failed `rmp` leaves behind."""
        victims = self.pod_processes()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while victims and time.monotonic() < deadline and any(procs.rss_kib(pid) for pid in victims):
            time.sleep(0.05)
        nodenet.unmount_all(nodenet.mounts_under([self.data_dir]))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
# Snapshotters and tracing this node does not use; overlayfs stays.
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{state}/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"""

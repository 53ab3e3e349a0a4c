"""The real node's recipes: configuration files, certificates and images, checked without running them."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from tailor.devstack import DevstackError, Stack, certs, nodenet, ociimage, provisioner
from tailor.devstack.components import containerd, coredns, kafka, kubelet, kubeproxy, kwok, redis


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def test_kafka_beside_a_real_node_advertises_the_node_address_to_pods_and_loopback_to_the_host(
    tmp_path: Path,
) -> None:
    props = properties(kafka.server_properties(19092, 19093, tmp_path, f"{nodenet.GATEWAY}:19094"))
    listeners = props["advertised.listeners"].split(",")
    assert "PLAINTEXT://127.0.0.1:19092" in listeners
    assert f"PODS://{nodenet.GATEWAY}:19094" in listeners
    assert "PODS:PLAINTEXT" in props["listener.security.protocol.map"]
    assert "PODS" not in kafka.server_properties(19092, 19093, tmp_path)


def test_redis_listens_on_the_node_address_only_beside_a_real_node(tmp_path: Path) -> None:
    alone = redis.redis_conf(16379, tmp_path).splitlines()
    assert "bind 127.0.0.1" in alone
    assert "protected-mode yes" in alone
    beside = redis.redis_conf(16379, tmp_path, nodenet.GATEWAY).splitlines()
    assert f"bind 127.0.0.1 {nodenet.GATEWAY}" in beside
    # Protected mode would refuse pods (not loopback) without a password.
    assert "protected-mode no" in beside


def test_node_certificates_name_the_node_and_the_apiserver_names_the_node_address(tmp_path: Path) -> None:
    node = certs.NodeIdentity(name="n1", address="10.243.0.1")
    paths = certs.CertPaths(tmp_path)
    certs.ensure(paths)
    assert not certs.is_complete(paths, node)  # a kwok-only set lacks the node's files
    certs.ensure(paths, node)
    assert certs.is_complete(paths, node)

    def load(path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())

    kubelet_client = load(paths.kubelet_client_cert).subject
    assert kubelet_client.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert kubelet_client.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    proxy = load(paths.kube_proxy_cert).subject
    assert proxy.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "system:kube-proxy"
    for cert_path in (paths.serving_cert, paths.kubelet_serving_cert):
        names = load(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address("10.243.0.1") in names.get_values_for_type(x509.IPAddress)
    ca = load(paths.ca_cert)
    for cert_path in (paths.kubelet_client_cert, paths.kubelet_serving_cert, paths.kube_proxy_cert):
        assert load(cert_path).issuer == ca.subject
    first = paths.ca_cert.read_bytes()
    certs.ensure(paths, node)
    assert paths.ca_cert.read_bytes() == first  # complete: kept


def test_containerd_config_keeps_everything_under_its_directories_and_pulls_only_locally(
    tmp_path: Path,
) -> None:
    text = containerd._CONFIG.format(
        root=tmp_path / "root",
        state=tmp_path / "state",
        socket=tmp_path / "c.sock",
        sandbox_image="127.0.0.1:5000/tailor-dev/pause:sha-1",
        stream_port=1234,
        runc="/usr/sbin/runc",
        cni_bin=tmp_path / "cni-bin",
        cni_conf=tmp_path / "cni",
        hosts=tmp_path / "certs.d",
    )
    config = tomllib.loads(text)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"].startswith("127.0.0.1:")
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["Root"].startswith(str(tmp_path))
    assert runc["SystemdCgroup"] is False
    assert cri["registry"]["config_path"] == str(tmp_path / "certs.d")
    hosts = tomllib.loads(containerd.hosts_toml("127.0.0.1:5000"))
    # The fallback server is the local registry too: nothing is ever fetched from outside.
    assert hosts["server"] == "http://127.0.0.1:5000"
    assert list(hosts["host"]) == ["http://127.0.0.1:5000"]


def test_cni_chain_is_a_bridge_on_the_node_subnet_without_masquerade(tmp_path: Path) -> None:
    config = containerd.cni_config(tmp_path / "bin", tmp_path / "ipam")
    plugins = {plugin["type"]: plugin for plugin in config["plugins"]}  # type: ignore[attr-defined]
    assert set(plugins) == {"bridge", "portmap", "loopback"}
    bridge = plugins["bridge"]
    assert bridge["bridge"] == nodenet.BRIDGE
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": nodenet.POD_SUBNET, "gateway": nodenet.GATEWAY}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")


def test_kubelet_configuration_fits_cgroup_v1_and_keeps_its_files_under_the_stack(tmp_path: Path) -> None:
    config = kubelet.kubelet_configuration(
        port=1,
        healthz_port=2,
        runtime_endpoint="unix:///x.sock",
        client_ca=tmp_path / "ca.crt",
        serving=(tmp_path / "k.crt", tmp_path / "k.key"),
        root=tmp_path,
        resolv_conf=tmp_path / "resolv.conf",
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupsPerQOS"] is False
    assert config["enforceNodeAllocatable"] == []
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["readOnlyPort"] == 0
    for key in ("podLogsDir", "volumePluginDir", "resolvConf"):
        assert config[key].startswith(str(tmp_path)), key
    assert (config["port"], config["healthzPort"]) != (10250, 10248)


def test_node_counts_as_ready_only_by_a_heartbeat_after_the_kubelet_started() -> None:
    started = datetime.datetime(2026, 12, 7, 7, 0, 0, tzinfo=datetime.UTC)
    node = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-12-07T06:59:59Z"}]
        }
    }
    assert kubelet.node_ready(node)
    assert not kubelet.node_ready(node, since=started)  # left from before this start
    node["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-12-07T07:00:00Z"
    assert kubelet.node_ready(node, since=started)
    node["status"]["conditions"][0]["status"] = "False"
    assert not kubelet.node_ready(node, since=started)


def test_kube_proxy_leaves_conntrack_sysctls_alone_and_serves_on_loopback(tmp_path: Path) -> None:
    config = kubeproxy.kube_proxy_configuration(
        kubeconfig_path=tmp_path / "k", healthz_port=1, metrics_port=2
    )
    assert config["mode"] == "nftables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["healthzBindAddress"].startswith("127.0.0.1:")
    assert config["metricsBindAddress"].startswith("127.0.0.1:")
    assert config["nodePortAddresses"] == [f"{nodenet.GATEWAY}/32"]


def test_kwok_manages_only_nodes_annotated_as_fake(tmp_path: Path) -> None:
    node = kwok.fake_node()
    key, value = kwok.FAKE_ANNOTATION
    assert node["metadata"]["annotations"][key] == value


def test_images_are_single_layer_oci_images_with_reproducible_digests(tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_bytes(b"\x7fELF fake program bytes")
    first = ociimage.build({"/bin/prog": program}, ["/bin/prog"], user="65532:65532", exposed_ports=[8080])
    again = ociimage.build({"/bin/prog": program}, ["/bin/prog"], user="65532:65532", exposed_ports=[8080])
    assert first.manifest() == again.manifest()  # same input, same digest: a re-push is free
    manifest = json.loads(first.manifest())
    assert manifest["mediaType"] == ociimage.MANIFEST_TYPE
    assert manifest["config"]["digest"] == first.config.digest
    config = json.loads(first.config.data)
    assert config["config"]["Entrypoint"] == ["/bin/prog"]
    assert config["config"]["User"] == "65532:65532"
    layer = gzip.decompress(first.layers[0].data)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert members["bin"].isdir()
    assert members["bin/prog"].mode == 0o755
    assert members["bin/prog"].uid == 0


@pytest.mark.parametrize("value", ["1", "0"])
def test_snapshot_round_trips_through_its_file(tmp_path: Path, value: str) -> None:
    snapshot = nodenet.Snapshot(
        sysctls={"net.ipv4.ip_forward": value},
        missing_dirs=["/run/containerd"],
        chains={"iptables filter": ["KUBE-FIREWALL"]},
        nft_tables=["ip nat"],
        nft_chains=["ip nat POSTROUTING"],
    )
    record = tmp_path / "host-before.json"
    snapshot.save(record)
    assert nodenet.Snapshot.load(record) == snapshot
    record.write_text("{}")
    assert nodenet.Snapshot.load(record) is None


def test_a_real_node_joins_only_the_stacks_own_apiserver(tmp_path: Path) -> None:
    stack = Stack("s", tmp_path, environ={"KUBECONFIG": "/elsewhere/kubeconfig"})
    with pytest.raises(DevstackError, match="KUBECONFIG=/elsewhere/kubeconfig"):
        stack.up(node="real")
    with pytest.raises(DevstackError, match="unknown node 'virtual'"):
        stack.up(node="virtual")
    assert not (tmp_path / "s" / "state.json").exists()  # refused before anything was written


def test_cluster_dns_serves_the_cluster_domain_on_the_node_address_and_forwards_nothing(
    tmp_path: Path,
) -> None:
    text = coredns.corefile(tmp_path / "kubeconfig", 1001, 1002)
    assert text.count(f"bind {nodenet.GATEWAY}") == 2
    assert f"kubeconfig {tmp_path / 'kubeconfig'}" in text
    assert "health 127.0.0.1:1001" in text
    assert "ready 127.0.0.1:1002" in text
    assert "forward" not in text  # no upstream: other names get NXDOMAIN from the template
    assert "rcode NXDOMAIN" in text


def test_provisioned_volumes_are_pre_bound_directories_on_the_real_node(tmp_path: Path) -> None:
    claim = SimpleNamespace(
        metadata=SimpleNamespace(
            name="data",
            namespace="ns",
            uid="u-1",
            annotations={provisioner.PROVISIONER_ANNOTATION: provisioner.PROVISIONER},
        ),
        spec=SimpleNamespace(
            resources=SimpleNamespace(requests={"storage": "1Gi"}),
            access_modes=["ReadWriteOnce"],
            volume_mode=None,
            storage_class_name=provisioner.STORAGE_CLASS,
            volume_name=None,
        ),
        status=SimpleNamespace(phase="Pending"),
    )
    assert provisioner.wants_volume(claim)
    volume = provisioner.persistent_volume(claim, tmp_path / "pvc-u-1", "n1")
    assert volume["metadata"]["name"] == "pvc-u-1"
    assert volume["spec"]["claimRef"]["uid"] == "u-1"
    assert volume["spec"]["hostPath"] == {"path": str(tmp_path / "pvc-u-1"), "type": "Directory"}
    terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["n1"]
    claim.spec.storage_class_name = "other"
    assert not provisioner.wants_volume(claim)  # another class's claim is not ours
    default = provisioner.storage_class()["metadata"]["annotations"]
    assert default["storageclass.kubernetes.io/is-default-class"] == "true"

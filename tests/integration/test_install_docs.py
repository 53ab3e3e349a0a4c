"""docs/install.md's YAML, checked by the real kube-apiserver: every ```yaml block of the page is either
Kubernetes objects, dry-run as they are (`kubectl apply --dry-run=server`, strict field validation,
with Tailor's and Strimzi's CRDs installed), or chart values, rendered with `helm template` and the
result dry-run the same way. A block that is neither, or that the API server refuses, fails."""

from __future__ import annotations

import copy
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart import KUBE_VERSION, MONITORING_GROUP, ROOT, crds_applied  # noqa: F401 (a fixture)

from tailor.devstack import artifacts, probes, strimzibuild

pytestmark = [pytest.mark.kube]

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
Manifest = dict[str, Any]
INSTALL_MD = ROOT / "docs" / "install.md"
# Indented blocks too (inside a list item), by their fence's indentation.
BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M)


def yaml_blocks() -> list[tuple[int, list[Any]]]:
    """(line, documents) of each ```yaml block of docs/install.md."""
    text = INSTALL_MD.read_text()
    return [
        (
            text.count("\n", 0, match.start()) + 1,
            [doc for doc in yaml.safe_load_all(textwrap.dedent(match.group(2))) if doc],
        )
        for match in BLOCK.finditer(text)
    ]


def is_manifest(document: Any) -> bool:
    return isinstance(document, dict) and "apiVersion" in document and "kind" in document


@pytest.fixture(scope="module")
def strimzi_crds(kubectl: Runner) -> Iterator[None]:
    """Strimzi's Kafka, KafkaNodePool and KafkaUser CRDs (its release's own, from Maven Central), and
    KafkaTopic; removed afterwards, so other tests see a cluster without Strimzi."""
    tools = artifacts.Toolbox()
    paths = [tools.strimzi_crd(name) for name in strimzibuild.CRDS]
    names = [yaml.safe_load(path.read_text())["metadata"]["name"] for path in paths]
    for path in paths:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    for name in names:
        probes.until_conditions_set(
            kubectl, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}"
        )
    yield
    for name in names:
        kubectl("delete", "crd", name, "--ignore-not-found", "--wait=false")


def dry_run(kubectl: Runner, namespace: str, manifests: list[Manifest]) -> subprocess.CompletedProcess[str]:
    """Server-side dry run of `manifests` in `namespace` (the page's namespaces do not exist here)."""
    moved = []
    for manifest in manifests:
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].pop("namespace", None)
        moved.append(manifest)
    return kubectl(
        "apply", "-n", namespace, "--dry-run=server", "--server-side", "--field-manager=docs-test",
        "--validate=strict", "-f", "-", input=yaml.safe_dump_all(moved), check=False,
    )  # fmt: skip


def rendered(helm_binary: Path, namespace: str, values: dict[str, Any], tmp_path: Path) -> list[Manifest]:
    """The chart with `values`, operator watching `namespace` (the page's `shop` does not exist here)."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [str(helm_binary), "template", "tailor", ".", "-n", namespace, "-f", str(values_file),
         "--set", f"operator.watchNamespaces={{{namespace}}}", "--kube-version", KUBE_VERSION],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"helm template refused the values:\n{result.stderr}"
    return [m for m in yaml.safe_load_all(result.stdout) if m and m["apiVersion"] != MONITORING_GROUP]


def test_every_yaml_block_of_the_install_guide_is_accepted_by_the_api_server(
    kubectl: Runner,
    namespace: str,
    crds_applied: None,  # noqa: F811 (the fixture, imported)
    strimzi_crds: None,
    tmp_path: Path,
) -> None:
    helm_binary = artifacts.Toolbox().helm
    blocks = yaml_blocks()
    assert len(blocks) == INSTALL_MD.read_text().count("```yaml"), "every block is found, indented ones too"
    assert len(blocks) >= 13, "the cloud walkthroughs' blocks are there"
    kinds = set()
    for line, documents in blocks:
        where = f"docs/install.md:{line}"
        if all(is_manifest(document) for document in documents):
            manifests = documents
        else:
            assert len(documents) == 1, f"{where}: several documents, not all Kubernetes objects"
            assert isinstance(documents[0], dict), f"{where}: neither Kubernetes objects nor chart values"
            manifests = rendered(helm_binary, namespace, documents[0], tmp_path)
        kinds |= {m["kind"] for m in manifests}
        result = dry_run(kubectl, namespace, manifests)
        assert result.returncode == 0, f"{where}: the API server refused it:\n{result.stderr}"
        assert result.stdout.count("(server dry run)") == len(manifests), where
    assert {"PersonalizationStack", "Secret", "ServiceAccount", "Ingress", "KafkaUser", "Kafka"} <= kinds

    # The control: the same check refuses a stack with a misspelt field.
    stack = next(m for _, documents in blocks for m in documents if is_manifest(m)
                 and m["kind"] == "PersonalizationStack")  # fmt: skip
    broken = copy.deepcopy(stack)
    broken["spec"]["kafka"]["bootstrapServer"] = broken["spec"]["kafka"].pop("bootstrapServers")
    refused = dry_run(kubectl, namespace, [broken])
    assert refused.returncode != 0
    assert "bootstrapServer" in refused.stderr

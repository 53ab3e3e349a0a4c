"""Strimzi's CRDs from Maven Central: KafkaTopic for tests of `spec.kafka.topics.management: strimzi`,
and Kafka, KafkaNodePool and KafkaUser too for the check of docs/install.md's Strimzi walkthrough.

Strimzi publishes its CRDs, as its release installs them, inside the test jar of its `api` artifact
(`crds/v1beta2/043-Crd-kafkatopic.yaml`: versions v1alpha1 to v1, storage v1beta2). Maven fetches the
jar (the same resolver and mirrors as Kafka's jars, kafkabuild) and each CRD is kept under
``<cache>/strimzi/<version>-r<recipe>/``. Nothing of Strimzi is kept in this repository.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from tailor.devstack import paths, toolchain, versions
from tailor.devstack.gobuild import Report
from tailor.devstack.runner import exclusive, run_logged

KAFKA_TOPIC_CRD = "crds/v1beta2/043-Crd-kafkatopic.yaml"
# The CRDs kept, by the name of their file in the cache.
CRDS = {
    "kafkatopic": KAFKA_TOPIC_CRD,
    "kafkauser": "crds/v1beta2/044-Crd-kafkauser.yaml",
    "kafka": "crds/v1beta2/040-Crd-kafka.yaml",
    "kafkanodepool": "crds/v1beta2/045-Crd-kafkanodepool.yaml",
}


def strimzi_root() -> Path:
    return paths.cache_root() / "strimzi" / f"{versions.STRIMZI}-r{versions.RECIPE}"


def kafka_topic_crd_path() -> Path:
    return strimzi_root() / "kafkatopic-crd.yaml"


def kafka_topic_crd(report: Report) -> Path:
    """The KafkaTopic CRD file, fetched unless cached."""
    return crd(report, "kafkatopic")


def crd(report: Report, name: str) -> Path:
    """The CRD file `name` (a key of CRDS), fetched unless cached."""
    target = strimzi_root() / f"{name}-crd.yaml"
    if target.exists():
        return target
    root = strimzi_root()
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root.with_suffix(".lock")):
        if target.exists():
            return target
        mvn = toolchain.find_tool("mvn")
        log = root / "fetch.log"
        report(f"fetching Strimzi {versions.STRIMZI}'s CRDs from Maven Central (log: {log})")
        download = root / "download"
        shutil.rmtree(download, ignore_errors=True)
        run_logged(
            [
                str(mvn),
                "-q",
                "-B",
                f"org.apache.maven.plugins:maven-dependency-plugin:{versions.MAVEN_DEPENDENCY_PLUGIN}:copy",
                f"-Dartifact=io.strimzi:api:{versions.STRIMZI}:jar:tests",
                f"-DoutputDirectory={download}",
            ],
            cwd=root,
            env=dict(os.environ),
            log=log,
            what=f"fetching io.strimzi:api:{versions.STRIMZI}:tests with Maven",
        )
        (jar,) = download.glob("*.jar")
        with zipfile.ZipFile(jar) as archive:
            for kept, member in CRDS.items():
                partial = root / f"{kept}-crd.partial"
                partial.write_bytes(archive.read(member))
                partial.rename(root / f"{kept}-crd.yaml")
        shutil.rmtree(download, ignore_errors=True)
    return target

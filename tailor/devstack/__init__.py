"""The local real stack: kube-apiserver (+ etcd, controller-manager, scheduler, kwok),
Apache Kafka and Redis on 127.0.0.1, built from registries and cached by version.

Public API::

    stack = Stack("default")      # state in $TAILOR_HOME/default
    stack.up()                    # build if needed, start in parallel, wait for health
    stack.up(node="real")         # ... with a real node (kubelet, containerd, registry) beside kwok
    stack.up(redis="cluster")     # ... with a Redis Cluster of six nodes instead of one Redis
    stack.env()                   # {"KUBECONFIG": ..., "TAILOR_KAFKA_BOOTSTRAP": ..., ...}
    stack.restart("redis")        # also start/stop/kill per component
    stack.down()
"""

from tailor.devstack.endpoints import Endpoints, render_exports
from tailor.devstack.errors import BuildFailed, ComponentFailed, DevstackError, NodeBusy, ToolchainMissing
from tailor.devstack.nodenet import GATEWAY as NODE_ADDRESS
from tailor.devstack.nodenet import NODE_NAME
from tailor.devstack.paths import DEFAULT_STACK_NAME
from tailor.devstack.stack import NODE_KINDS, REDIS_KINDS, ComponentStatus, Stack

__all__ = [
    "DEFAULT_STACK_NAME",
    "NODE_ADDRESS",
    "NODE_KINDS",
    "NODE_NAME",
    "REDIS_KINDS",
    "BuildFailed",
    "ComponentFailed",
    "ComponentStatus",
    "DevstackError",
    "Endpoints",
    "NodeBusy",
    "Stack",
    "ToolchainMissing",
    "render_exports",
]

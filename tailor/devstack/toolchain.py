"""Finding the external programs the stack needs, with one clear message when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tailor.devstack.errors import ToolchainMissing

#: Where Go's official tarball installs itself, and Debian's runc, iptables and nft (/usr/sbin):
#: often not on PATH in non-login shells.
_EXTRA_DIRS = ("/usr/local/go/bin", str(Path.home() / "go" / "bin"), "/usr/sbin", "/sbin")

_INSTALL_HINTS = {
    "go": "Go 1.26 or newer (https://go.dev/doc/install; expected at /usr/local/go/bin/go)",
    "java": "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
    "mvn": "Apache Maven (Debian: apt-get install maven)",
    "redis-server": "Debian's redis-server (run scripts/apt-packages.sh)",
    "kcat": "Debian's kcat (run scripts/apt-packages.sh)",
    "promtool": "Debian's prometheus package, which ships promtool (run scripts/apt-packages.sh)",
    "containerd": "Debian's containerd package, 1.6 with the CRI plugin (run scripts/apt-packages.sh)",
    "runc": "Debian's runc package (run scripts/apt-packages.sh)",
    "iptables": "Debian's iptables package (run scripts/apt-packages.sh)",
    "nft": "Debian's nftables package (run scripts/apt-packages.sh)",
}


def find_tool(name: str) -> Path:
    """Return the path of program ``name`` or raise ToolchainMissing naming what to install."""
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    found = shutil.which(name, path=search_path)
    if found is None:
        hint = _INSTALL_HINTS.get(name, name)
        raise ToolchainMissing(f"`{name}` was not found on PATH: install {hint}, then retry.")
    return Path(found)

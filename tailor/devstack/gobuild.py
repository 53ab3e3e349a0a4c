"""Building Go programs from upstream modules through scratch modules, cached by version.

Each program gets ``<cache>/go/<name>-<version>-r<recipe>/`` holding the scratch module
(``src/``), the binaries (``bin/``), a build log, and a ``.complete`` marker written last,
so an interrupted build is redone and a finished one is never rebuilt. Go's own build and
module caches (~/.cache/go-build, ~/go/pkg/mod) stay warm across runs as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tailor.devstack import gomod, paths, toolchain, versions
from tailor.devstack.runner import exclusive, run_logged

Report = Callable[[str], None]


@dataclass(frozen=True)
class GoProgram:
    """One scratch-module build: which module to require, what to build, how to stamp it."""

    name: str
    module: str
    version: str
    packages: Sequence[str]
    ldflags: Sequence[str] = ()
    replaces: Sequence[tuple[str, str]] = field(default_factory=tuple)
    #: Executables to rename after the build, e.g. etcd's main is named after its package
    #: path (``.../server/v3`` gives ``server``).
    renames: Sequence[tuple[str, str]] = field(default_factory=tuple)
    #: Part of the cache key besides name, version and RECIPE, for a program whose build changed.
    variant: str = ""

    @property
    def root(self) -> Path:
        key = f"{self.name}-{self.version}-r{versions.RECIPE}{self.variant}"
        return paths.cache_root() / "go" / key

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def log(self) -> Path:
        return self.root / "build.log"

    def is_built(self) -> bool:
        return (self.root / ".complete").exists()


def go_env() -> dict[str, str]:
    """Environment for every go command: static binaries, no toolchain downloads."""
    go = toolchain.find_tool("go")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(go.parent), env.get("PATH", "")])
    # GOTOOLCHAIN=local: build with the installed Go instead of silently fetching another.
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-buildvcs=false"
    return env


def go_version(env: dict[str, str]) -> str:
    """The installed Go's version without the ``go`` prefix, e.g. ``1.26.8``."""
    out = run_logged(
        ["go", "env", "GOVERSION"],
        cwd=Path.cwd(),
        env=env,
        log=paths.cache_root() / "go" / "go-env.log",
        what="`go env GOVERSION`",
    )
    return out.strip().removeprefix("go")


def module_info(module: str, version: str, env: dict[str, str], log: Path) -> dict[str, str]:
    """``go mod download -json`` of one module version: its Dir, GoMod path, and so on."""
    out = run_logged(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=log.parent,
        env=env,
        log=log,
        what=f"downloading {module}@{version}",
    )
    info: dict[str, str] = json.loads(out)
    return info


def build(program: GoProgram, report: Report) -> Path:
    """Build ``program`` unless its cached binaries exist; return the bin directory."""
    if program.is_built():
        return program.bin_dir
    with exclusive(program.root.with_suffix(".lock")):
        if program.is_built():  # another process finished it while we waited
            return program.bin_dir
        report(f"building {program.name} {program.version} (log: {program.log})")
        env = go_env()
        src = program.root / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        program.log.write_text("")
        (src / "go.mod").write_text(
            gomod.render_go_mod(
                f"tailor.dev/devstack/scratch/{program.name}",
                go_version(env),
                [(program.module, program.version)],
                program.replaces,
            )
        )
        # Explicit @version: a bare `go get pkg` means @upgrade and would move the pin.
        run_logged(
            ["go", "get", *(f"{pkg}@{program.version}" for pkg in program.packages)],
            cwd=src,
            env=env,
            log=program.log,
            what=f"resolving {program.name} modules",
        )
        staging_bin = program.root / "bin.partial"
        shutil.rmtree(staging_bin, ignore_errors=True)
        staging_bin.mkdir()
        # One `go build` for all packages of a program: they share most compile work.
        run_logged(
            [
                "go",
                "build",
                "-o",
                f"{staging_bin}{os.sep}",
                "-ldflags",
                " ".join(["-s", "-w", *program.ldflags]),
                *program.packages,
            ],
            cwd=src,
            env=env,
            log=program.log,
            what=f"building {program.name}",
        )
        for old, new in program.renames:
            (staging_bin / old).rename(staging_bin / new)
        shutil.rmtree(program.bin_dir, ignore_errors=True)
        staging_bin.rename(program.bin_dir)
        (program.root / ".complete").write_text(program.version + "\n")
    return program.bin_dir


def module_dir(program: GoProgram) -> Path:
    """The module cache directory of ``program``'s module (its sources, stage files, ...)."""
    info = module_info(program.module, program.version, go_env(), program.root / "download.log")
    return Path(info["Dir"])


def source_digest(source: Path) -> str:
    """A short digest of every file under ``source``: the cache key of a local build."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_source(name: str, source: Path, packages: Sequence[str], report: Report) -> Path:
    """Build ``packages`` (paths like ``./pause``) of the Go module in ``source``, our own code.

    Cached under ``<cache>/go/<name>-<digest of the sources>/`` so an edit rebuilds once.
    """
    root = paths.cache_root() / "go" / f"{name}-{source_digest(source)}"
    bin_dir = root / "bin"
    if (root / ".complete").exists():
        return bin_dir
    with exclusive(root.with_suffix(".lock")):
        if (root / ".complete").exists():
            return bin_dir
        report(f"building {name} from {source}")
        staging_bin = root / "bin.partial"
        shutil.rmtree(staging_bin, ignore_errors=True)
        staging_bin.mkdir(parents=True)
        run_logged(
            ["go", "build", "-trimpath", "-o", f"{staging_bin}{os.sep}", "-ldflags", "-s -w", *packages],
            cwd=source,
            env=go_env(),
            log=root / "build.log",
            what=f"building {name}",
        )
        shutil.rmtree(bin_dir, ignore_errors=True)
        staging_bin.rename(bin_dir)
        (root / ".complete").write_text(source_digest(source) + "\n")
    return bin_dir

"""`tailor dev env` puts the stack's helm and kubectl on PATH, once, however often it is evaluated."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from tailor.cli import dev


def fake_stack(root: Path, tools: Path) -> SimpleNamespace:
    for name in ("helm", "kubectl"):
        program = tools / f"real-{name}"
        program.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        program.chmod(0o755)
    return SimpleNamespace(
        paths=SimpleNamespace(root=root), helm=tools / "real-helm", kubectl=tools / "real-kubectl"
    )


def test_the_path_line_gives_the_shell_the_stacks_helm_and_kubectl_once(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    stack = fake_stack(tmp_path / "with space" / "default", tmp_path / "tools")
    line = dev._path_line(dev._tools_dir(stack))  # type: ignore[arg-type]
    script = f'PATH=/usr/bin:/bin\n{line}{line}echo "$PATH"\nhelm install tailor .\nkubectl get pods\n'
    shell = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    path, helm, kubectl = shell.stdout.splitlines()
    assert path == f"{tmp_path}/with space/default/bin:/usr/bin:/bin"  # prepended once, spaces kept
    assert helm == "helm install tailor ."
    assert kubectl == "kubectl get pods"
    assert sorted(p.name for p in (tmp_path / "with space/default/bin").iterdir()) == ["helm", "kubectl"]


def test_the_links_follow_the_stacks_tools_when_they_move(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    directory = dev._tools_dir(fake_stack(tmp_path / "home", tmp_path / "old"))  # type: ignore[arg-type]
    dev._tools_dir(fake_stack(tmp_path / "home", tmp_path / "new"))  # type: ignore[arg-type]
    assert (directory / "helm").readlink() == tmp_path / "new" / "real-helm"

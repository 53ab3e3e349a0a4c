"""The staging-module replace list is generated from a release's go.mod, not typed."""

from __future__ import annotations

from tailor.devstack import gomod

KUBERNETES_LIKE_GO_MOD = """\
// This is a generated file. Do not edit directly.
module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.10.0
\tk8s.io/api v0.0.0
\tk8s.io/apimachinery v0.0.0 // a comment
\tk8s.io/klog/v2 v2.140.0
)

require k8s.io/client-go v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
\tk8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
\tgithub.com/example/fork => github.com/example/fork v1.2.3
)

replace k8s.io/client-go => ./staging/src/k8s.io/client-go
"""


def test_every_required_staging_module_is_replaced_with_the_published_version() -> None:
    assert gomod.staging_replacements(KUBERNETES_LIKE_GO_MOD, "v0.36.3") == [
        ("k8s.io/api", "v0.36.3"),
        ("k8s.io/apimachinery", "v0.36.3"),
        ("k8s.io/client-go", "v0.36.3"),
    ]


def test_locally_replaced_but_unrequired_modules_are_left_out() -> None:
    # sample-cli-plugin is not published at all; replacing it would break `go get`.
    modules = [module for module, _ in gomod.staging_replacements(KUBERNETES_LIKE_GO_MOD, "v1")]
    assert "k8s.io/sample-cli-plugin" not in modules
    assert "github.com/example/fork" not in modules


def test_requirements_are_read_from_blocks_and_single_lines() -> None:
    required = gomod.required_modules(KUBERNETES_LIKE_GO_MOD)
    assert required["k8s.io/klog/v2"] == "v2.140.0"
    assert required["k8s.io/client-go"] == "v0.0.0"
    assert required["k8s.io/apimachinery"] == "v0.0.0"


def test_rendered_go_mod_requires_and_replaces() -> None:
    text = gomod.render_go_mod(
        "example.com/scratch",
        "1.26.8",
        [("k8s.io/kubernetes", "v1.36.3")],
        [("k8s.io/api", "v0.36.3")],
    )
    assert text.startswith("module example.com/scratch\n\ngo 1.26.8\n")
    assert "\tk8s.io/kubernetes v1.36.3\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.36.3\n" in text
    # What we render parses back to the same requirements.
    assert gomod.required_modules(text) == {"k8s.io/kubernetes": "v1.36.3"}

"""The apiserver's PKI: what a client and the apiserver will check in these certificates."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tailor.devstack import certs


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_certificate_is_signed_by_the_ca_for_loopback_and_service_names(
    tmp_path: Path,
) -> None:
    made = certs.ensure(certs.CertPaths(tmp_path))
    ca, serving = load(made.ca_cert), load(made.serving_cert)
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_client_certificate_is_a_system_masters_member(tmp_path: Path) -> None:
    made = certs.ensure(certs.CertPaths(tmp_path))
    client = load(made.client_cert)
    client.verify_directly_issued_by(load(made.ca_cert))
    organizations = client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in organizations] == ["system:masters"]
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_service_account_keys_are_a_pair_and_private_files_are_private(tmp_path: Path) -> None:
    made = certs.ensure(certs.CertPaths(tmp_path))
    private = serialization.load_pem_private_key(made.service_account_key.read_bytes(), None)
    public = serialization.load_pem_public_key(made.service_account_pub.read_bytes())
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
    for key in (made.serving_key, made.client_key, made.service_account_key):
        assert key.stat().st_mode & 0o077 == 0, key


def test_existing_set_is_kept_so_restarts_keep_trusting_old_tokens(tmp_path: Path) -> None:
    first = certs.ensure(certs.CertPaths(tmp_path)).ca_cert.read_bytes()
    second = certs.ensure(certs.CertPaths(tmp_path)).ca_cert.read_bytes()
    assert first == second

"""Certificates and keys for the local kube-apiserver, made with ``cryptography``.

The same set controller-runtime's envtest makes: a throwaway CA, a serving certificate for
127.0.0.1/localhost (and the in-cluster names of the ``kubernetes`` Service), a client
certificate in group ``system:masters`` (full access through RBAC's superuser group), and
a key pair that signs and verifies service-account tokens. ECDSA P-256 keys: generating
them takes milliseconds, unlike RSA, and every Kubernetes component accepts them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for a dev stack that lives for weeks; short enough not to be a habit.
_VALIDITY = datetime.timedelta(days=365)
#: The first address of --service-cluster-ip-range, where the `kubernetes` Service lives.
SERVICE_IP = "10.0.0.1"
ADMIN_USER = "tailor-admin"
ADMIN_GROUP = "system:masters"


@dataclass(frozen=True)
class CertPaths:
    """Files of the stack's PKI inside one directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def all(self) -> tuple[Path, ...]:
        return (
            self.ca_cert,
            self.serving_cert,
            self.serving_key,
            self.client_cert,
            self.client_key,
            self.service_account_key,
            self.service_account_pub,
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a clock skew between writer and reader never rejects it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that signs both the serving and the client certificate."""
    key = _new_key()
    name = _name("tailor-devstack-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def serving_names() -> x509.SubjectAlternativeName:
    """Names clients use for the apiserver: loopback and the in-cluster Service names."""
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", SERVICE_IP]
    return x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in dns] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def ensure(paths: CertPaths) -> CertPaths:
    """Create the whole set unless every file already exists (a restart keeps them)."""
    if all(path.exists() for path in paths.all()):
        return paths
    paths.directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca()
    serving, serving_key = _leaf(
        ca_cert,
        ca_key,
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_names(),
    )
    client, client_key = _leaf(
        ca_cert, ca_key, _name(ADMIN_USER, ADMIN_GROUP), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    sa_key = _new_key()
    _write(paths.ca_cert, _pem(ca_cert), private=False)
    _write(paths.serving_cert, _pem(serving), private=False)
    _write(paths.serving_key, _key_pem(serving_key), private=True)
    _write(paths.client_cert, _pem(client), private=False)
    _write(paths.client_key, _key_pem(client_key), private=True)
    _write(paths.service_account_key, _key_pem(sa_key), private=True)
    _write(
        paths.service_account_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        private=False,
    )
    return paths

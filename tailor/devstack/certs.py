"""Certificates and keys for the local kube-apiserver, made with ``cryptography``.

The same set controller-runtime's envtest makes: a throwaway CA, a serving certificate for
127.0.0.1/localhost (and the in-cluster names of the ``kubernetes`` Service), a client
certificate in group ``system:masters`` (full access through RBAC's superuser group), and
a key pair that signs and verifies service-account tokens. ECDSA P-256 keys: generating
them takes milliseconds, unlike RSA, and every Kubernetes component accepts them.

A stack with a real node (``ensure(paths, node)``) also gets what a kubeadm node has: the
kubelet's client certificate (``system:node:<name>`` in ``system:nodes``, which the Node
authorizer recognizes), its serving certificate for the node's address, and kube-proxy's
client certificate (``system:kube-proxy``, bound to ``system:node-proxier`` by default RBAC).
The CA key is kept for that, and the apiserver's certificate then also names the node's address.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for a dev stack that lives for weeks; short enough not to be a habit.
_VALIDITY = datetime.timedelta(days=365)
#: The first address of --service-cluster-ip-range, where the `kubernetes` Service lives.
SERVICE_IP = "10.0.0.1"
ADMIN_USER = "tailor-admin"
ADMIN_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
KUBE_PROXY_USER = "system:kube-proxy"


@dataclass(frozen=True)
class NodeIdentity:
    """The real node's name and address (the bridge's gateway), as its certificates name them."""

    name: str
    address: str


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

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def kafka_server(self) -> Path:
        """The broker's TLS listeners' key and certificate chain, in one PEM file (Kafka's PEM keystore)."""
        return self.directory / "kafka-server.pem"

    @property
    def kafka_client_cert(self) -> Path:
        return self.directory / "kafka-client.crt"

    @property
    def kafka_client_key(self) -> Path:
        return self.directory / "kafka-client.key"

    @property
    def oidc_signing_key(self) -> Path:
        """The key a stand-in OIDC provider signs Kafka tokens with (tests run the provider)."""
        return self.directory / "oidc-signing.key"

    @property
    def oidc_jwks(self) -> Path:
        """Its public key as a JSON Web Key Set: what the broker validates OAUTHBEARER tokens with."""
        return self.directory / "oidc-jwks.json"

    @property
    def kafka_own_ca(self) -> Path:
        """Kafka's CA when the stack's CA key was not kept (a stack made before Kafka had TLS)."""
        return self.directory / "kafka-ca.crt"

    @property
    def kubelet_client_cert(self) -> Path:
        return self.directory / "kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.directory / "kubelet-client.key"

    @property
    def kubelet_serving_cert(self) -> Path:
        return self.directory / "kubelet.crt"

    @property
    def kubelet_serving_key(self) -> Path:
        return self.directory / "kubelet.key"

    @property
    def kube_proxy_cert(self) -> Path:
        return self.directory / "kube-proxy.crt"

    @property
    def kube_proxy_key(self) -> Path:
        return self.directory / "kube-proxy.key"

    def node_files(self) -> tuple[Path, ...]:
        return (
            self.ca_key,
            self.kubelet_client_cert,
            self.kubelet_client_key,
            self.kubelet_serving_cert,
            self.kubelet_serving_key,
            self.kube_proxy_cert,
            self.kube_proxy_key,
        )

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


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: tuple[str, ...] = (),
    *,
    client: bool = False,
) -> tuple[bytes, bytes]:
    """(certificate, key) as PEM, signed by the CA: a serving certificate for ``names`` (DNS names
    and IP addresses), or with ``client`` a client certificate. For local servers that speak TLS
    beside the apiserver (the tests' Redis with TLS)."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert, key = _leaf(
        ca_cert, ca_key, _name(common_name), usage, x509.SubjectAlternativeName(entries) if entries else None
    )
    return _pem(cert), _key_pem(key)


def serving_names(extra_ips: tuple[str, ...] = ()) -> x509.SubjectAlternativeName:
    """Names clients use for the apiserver: loopback, the in-cluster Service names, and
    ``extra_ips`` (the real node's address, where pods reach the apiserver)."""
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", SERVICE_IP, *extra_ips]
    return x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in dns] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _names_ip(cert_path: Path, address: str) -> bool:
    """True when the certificate at ``cert_path`` lists ``address`` among its IP names."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ipaddress.ip_address(address) in names.get_values_for_type(x509.IPAddress)


def is_complete(paths: CertPaths, node: NodeIdentity | None = None) -> bool:
    """True when every file exists and, for a real node, the apiserver's certificate names its address."""
    wanted = paths.all() + (paths.node_files() if node is not None else ())
    if not all(path.exists() for path in wanted):
        return False
    return node is None or _names_ip(paths.serving_cert, node.address)


def ensure(paths: CertPaths, node: NodeIdentity | None = None) -> CertPaths:
    """Create the whole set unless it is complete (a restart keeps it).

    A stack first started without a real node lacks the node's files; it is then made
    afresh, CA included (the stack is down when its node changes: see Stack.up).
    """
    if is_complete(paths, node):
        return paths
    paths.directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca()
    extra_ips = (node.address,) if node is not None else ()
    serving, serving_key = _leaf(
        ca_cert,
        ca_key,
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_names(extra_ips),
    )
    client, client_key = _leaf(
        ca_cert, ca_key, _name(ADMIN_USER, ADMIN_GROUP), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    sa_key = _new_key()
    _write(paths.ca_cert, _pem(ca_cert), private=False)
    _write(paths.ca_key, _key_pem(ca_key), private=True)  # signs the node's and Kafka's certificates
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
    if node is not None:
        _write_node_set(paths, node, ca_cert, ca_key)
    return paths


def _write_node_set(
    paths: CertPaths, node: NodeIdentity, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    """The real node's certificates, and the CA key that signed them."""
    kubelet_client, kubelet_client_key = _leaf(
        ca_cert, ca_key, _name(f"system:node:{node.name}", NODES_GROUP), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    # The apiserver connects to the kubelet (logs, exec) at the node's address and checks
    # this certificate against the CA (--kubelet-certificate-authority).
    kubelet_serving, kubelet_serving_key = _leaf(
        ca_cert,
        ca_key,
        _name(node.name),
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [
                x509.DNSName(node.name),
                x509.IPAddress(ipaddress.ip_address(node.address)),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]
        ),
    )
    kube_proxy, kube_proxy_key = _leaf(
        ca_cert, ca_key, _name(KUBE_PROXY_USER), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _write(paths.ca_key, _key_pem(ca_key), private=True)
    _write(paths.kubelet_client_cert, _pem(kubelet_client), private=False)
    _write(paths.kubelet_client_key, _key_pem(kubelet_client_key), private=True)
    _write(paths.kubelet_serving_cert, _pem(kubelet_serving), private=False)
    _write(paths.kubelet_serving_key, _key_pem(kubelet_serving_key), private=True)
    _write(paths.kube_proxy_cert, _pem(kube_proxy), private=False)
    _write(paths.kube_proxy_key, _key_pem(kube_proxy_key), private=True)


KAFKA_CLIENT_USER = "tailor-kafka-client"


def kafka_tls(paths: CertPaths, addresses: tuple[str, ...] = ("127.0.0.1",)) -> Path:
    """The broker's TLS listeners' certificate (for `addresses` and localhost) and a client certificate
    (CN=tailor-kafka-client) for the mutual-TLS listener, signed by the stack's CA; made once, again
    when the addresses change. Returns the CA that signed them, for clients to trust.

    A stack whose CA key was not kept (made before this) gets a CA of Kafka's own, beside it.
    """
    if paths.ca_key.exists():
        ca_path = paths.ca_cert
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca_path = paths.kafka_own_ca
        if _kafka_set_complete(paths, addresses, ca_path):
            return ca_path
        ca_cert, ca_key = make_ca()
        _write(ca_path, _pem(ca_cert), private=False)
    if _kafka_set_complete(paths, addresses, ca_path):
        return ca_path
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    )
    server, server_key = _leaf(ca_cert, ca_key, _name("kafka"), ExtendedKeyUsageOID.SERVER_AUTH, names)
    client, client_key = _leaf(ca_cert, ca_key, _name(KAFKA_CLIENT_USER), ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(paths.kafka_server, _key_pem(server_key) + _pem(server) + _pem(ca_cert), private=True)
    _write(paths.kafka_client_cert, _pem(client), private=False)
    _write(paths.kafka_client_key, _key_pem(client_key), private=True)
    return ca_path


def _kafka_set_complete(paths: CertPaths, addresses: tuple[str, ...], ca_path: Path) -> bool:
    files = (paths.kafka_server, paths.kafka_client_cert, paths.kafka_client_key, ca_path)
    if not all(path.exists() for path in files):
        return False
    server = x509.load_pem_x509_certificate(paths.kafka_server.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        server.verify_directly_issued_by(ca)  # a CA made afresh has the same name: check the signature
    except (ValueError, TypeError, InvalidSignature):
        return False
    named = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {ipaddress.ip_address(a) for a in addresses} <= set(named.get_values_for_type(x509.IPAddress))


OIDC_KEY_ID = "tailor-devstack"


def oidc_issuer(paths: CertPaths) -> Path:
    """A signing key (ES256) for OAUTHBEARER tokens and its JWKS, made once; returns the JWKS."""
    if paths.oidc_signing_key.exists() and paths.oidc_jwks.exists():
        return paths.oidc_jwks
    key = _new_key()
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y),
           "kid": OIDC_KEY_ID, "use": "sig", "alg": "ES256"}  # fmt: skip
    _write(paths.oidc_signing_key, _key_pem(key), private=True)
    _write(paths.oidc_jwks, json.dumps({"keys": [jwk]}).encode(), private=False)
    return paths.oidc_jwks

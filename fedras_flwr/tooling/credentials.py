"""TLS certificates and SuperNode authentication keys for a deployment (Python `cryptography`, no openssl).

    python -m fedras_flwr.tooling.credentials --nodes 3 [--out credentials] [--san server.example.org --san 10.0.0.5]

writes one folder per component (the layout fedras_flwr/tooling/deploy.py mounts and passes to Flower;
`fedras deploy-local` calls make_credentials() itself):

    ca/ca.crt, ca/ca.key            the CA; its key stays with the operator
    superlink/                      ca.crt, server.crt, server.key (SAN: superlink, localhost, 127.0.0.1, --san)
    supernode-<i>/                  ca.crt, server.crt, server.key (SAN: supernode-<i>, localhost, 127.0.0.1)
                                    auth.key, auth.pub: the node's ECDSA P-384 key pair, OpenSSH format
    authorized/supernode-<i>.pub    the SuperLink's list of authorised nodes (registered by `deploy register`)

Existing files are kept, so re-running with a larger --nodes adds devices under the same CA; a node whose
authorized/<node>.pub already exists (a key pair made on the device) gets no key pair here. --san only
affects a SuperLink certificate that does not exist yet (delete superlink/ to re-issue it).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedras_flwr.tooling.deploy import (
    AUTH_KEY,
    AUTH_PUB,
    AUTHORIZED,
    CA_CERT,
    CA_DIR,
    SUPERLINK,
    TLS_CERT,
    TLS_KEY,
    topology,
)

CURVE = ec.SECP384R1()  # the curve `flwr supernode register` and Flower's own key generation use
LOOPBACK = ("localhost", "127.0.0.1")


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedras-flwr"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def ensure_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in `folder` (created on first use, 10 years)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CA_CERT, folder / "ca.key"
    if not cert_path.exists():
        key = ec.generate_private_key(CURVE)
        cert = (
            _builder(_name("fedras-flwr CA"), _name("fedras-flwr CA"), key, days=3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA384())
        )
        _write_private(key_path, key, serialization.PrivateFormat.PKCS8)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_private(key_path)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def ensure_server_cert(folder: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], names: list[str]) -> None:
    """`folder`/server.crt + server.key for the HTTPS API of one component, plus the CA cert to verify peers."""
    ca_cert, ca_key = ca
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / CA_CERT).exists():
        (folder / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    if (folder / TLS_CERT).exists():
        return
    key = ec.generate_private_key(CURVE)
    cert = (
        _builder(_name(names[0]), ca_cert.subject, key, days=825)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    _write_private(folder / TLS_KEY, key, serialization.PrivateFormat.PKCS8)
    (folder / TLS_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_auth_keys(folder: Path) -> bytes:
    """The SuperNode's authentication key pair (OpenSSH, what `--auth-supernode-private-key` and
    `flwr supernode register` read; `ssh-keygen -t ecdsa -b 384` makes the same); returns the public key."""
    if not (folder / AUTH_KEY).exists():
        _write_private(folder / AUTH_KEY, ec.generate_private_key(CURVE), serialization.PrivateFormat.OpenSSH)
    key = serialization.load_ssh_private_key((folder / AUTH_KEY).read_bytes(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n"
    (folder / AUTH_PUB).write_bytes(public)
    return public


def make_credentials(out: Path, node_names: list[str], extra_sans: Sequence[str] = ()) -> None:
    """CA, SuperLink and SuperNode certificates, node key pairs and the authorised-keys folder under `out`."""
    ca = ensure_ca(out / CA_DIR)
    ensure_server_cert(out / SUPERLINK, ca, [SUPERLINK, *LOOPBACK, *extra_sans])
    (out / AUTHORIZED).mkdir(exist_ok=True)
    for name in node_names:
        ensure_server_cert(out / name, ca, [name, *LOOPBACK])
        authorized = out / AUTHORIZED / f"{name}.pub"
        if not authorized.exists():  # else the key was made on the device itself: no private key here
            authorized.write_bytes(ensure_auth_keys(out / name))


def main(argv: list[str] | None = None) -> int:
    """The command line (argv without the command words; None: sys.argv[1:]); the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fedras_flwr.tooling.credentials", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help="SuperNodes supernode-1..N (default 3)")
    parser.add_argument("--out", type=Path, default=Path("credentials"), help="output folder (default ./credentials)")
    parser.add_argument("--san", action="append", default=[], help="extra SuperLink host name or IP (repeatable)")
    args = parser.parse_args(argv)
    make_credentials(args.out, [node.name for node in topology(args.nodes)], args.san)
    print(f"credentials in {args.out.resolve()}; containers run as uid 49999: `sudo chown -R 49999:49999 {args.out}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small TLS-terminating TCP proxy, and a throw-away certificate authority, for the local broker.

Tansu 0.6 listens in plaintext only (its ``--cert`` flag configures no listener), so the runner's
TLS is tested through this proxy: clients speak TLS to it (optionally with a client certificate it
verifies, i.e. mutual TLS), and it forwards the bytes, unchanged, to the broker's plaintext port.
The broker advertises the proxy's address, so every connection a Kafka client makes after the
bootstrap goes through TLS too. Nothing of the Kafka protocol is looked at here.

``Pki.create(folder)`` writes a CA, a server certificate for ``localhost`` and ``127.0.0.1``, and a
client certificate, all signed by that CA and valid for two days (``cryptography``, already a
dependency of the AWS SDK and moto).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Pki:
    """PEM files: ``ca`` (the CA certificate), the server's and the client's certificate and key."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    @classmethod
    def create(cls, folder: str | Path) -> Pki:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
            return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(hours=1))
                    .not_valid_after(now + datetime.timedelta(days=2)))

        def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
            cert_path, key_path = root / f"{stem}.pem", root / f"{stem}.key"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            key_path.chmod(0o600)
            return str(cert_path), str(key_path)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = name("influx-sink test CA")
        ca = (builder("influx-sink test CA", ca_name, ca_key)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, encipher_only=False,
                                           decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        ca_path, _ = write("ca", ca, ca_key)

        def leaf(subject: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> tuple[str, str]:
            key = ec.generate_private_key(ec.SECP256R1())
            b = (builder(subject, ca_name, key)
                 .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                 .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                critical=False))
            if names:
                b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
            return write(subject, b.sign(ca_key, hashes.SHA256()), key)

        server = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                      [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        client = leaf("influx-sink-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
        return cls(ca_path, *server, *client)


class TlsProxy:
    """TLS on ``127.0.0.1:port`` → plaintext ``upstream``, on a thread of its own event loop.

    ``require_client_cert``: the handshake fails unless the client presents a certificate signed
    by ``pki.ca`` (what a broker's ``ssl.client.auth=required`` does).
    """

    def __init__(self, port: int, upstream: tuple[str, int], pki: Pki, *, require_client_cert: bool = False) -> None:
        self.port, self.upstream = port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.load_verify_locations(pki.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tls-proxy-{port}", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"the TLS proxy could not listen on {self.address}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context,
                                     ssl_handshake_timeout=10))
        except OSError:
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
            writer.close()

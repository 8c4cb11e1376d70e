"""TLS and API keys with the real Triton clients: tritonclient.http over
HTTPS and tritonclient.grpc over TLS against a CA made here with `cryptography`, with and
without the API key; mTLS with and without a client certificate; and a certificate rotated
(new files + SIGHUP) while clients keep sending requests: no request fails and new
connections get the new certificate (checked by serial number).
"""

import datetime
import ipaddress
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import gevent.ssl
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.utils import InferenceServerException

from conftest import Server, samples, binary_path

KEY = "test-key-8f3a"


def auth() -> dict:
    """A fresh header dict each call: tritonclient.http adds its own headers into it. The
    name is lower case because gRPC metadata keys must be (HTTP headers do not care)."""
    return {"authorization": f"Bearer {KEY}"}


class Pki:
    """A CA and leaf certificates it signs, written as PEM files into `dir`."""

    def __init__(self, dir: Path):
        self.dir = dir
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlpserve test CA")])
        self.ca_name = name
        self.ca = self._build(name, self.ca_key.public_key(), 1, ca=True)
        self.ca_path = dir / "ca.pem"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def _build(self, subject, public_key, serial, ca=False, client=False):
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_name if not ca else subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(self.ca_key, hashes.SHA256())

    def leaf(self, name: str, serial: int, client: bool = False, dir: Path = None) -> tuple:
        """Writes <name>.key then <name>.pem (into `dir`, default the CA's); returns their
        paths."""
        dir = dir or self.dir
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = self._build(subject, key.public_key(), serial, client=client)
        key_path, cert_path = dir / f"{name}.key", dir / f"{name}.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def context(self, client_cert: tuple = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        if client_cert:
            ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        return ctx


def served_serial(pki: Pki, addr: str) -> int:
    """Serial number of the certificate a fresh TLS connection to `addr` is given."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with pki.context().wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def http_client(server: Server, pki: Pki, client_cert: tuple = None):
    def factory():
        ctx = gevent.ssl.create_default_context(cafile=str(pki.ca_path))
        if client_cert:
            ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        return ctx

    return httpclient.InferenceServerClient(url=server.http, ssl=True, ssl_context_factory=factory)


def grpc_client(server: Server, pki: Pki, client_cert: tuple = None):
    kw = {}
    if client_cert:
        kw = {"certificate_chain": str(client_cert[0]), "private_key": str(client_cert[1])}
    return grpcclient.InferenceServerClient(
        url=server.grpc, ssl=True, root_certificates=str(pki.ca_path), **kw
    )


def digits_inputs(module):
    pixels = samples("mlp_digits")[0]["inputs"]["pixels"]
    i = module.InferInput("pixels", pixels["shape"], pixels["datatype"])
    i.set_data_from_numpy(np.array(pixels["data"], dtype=np.float32).reshape(pixels["shape"]))
    return [i]


def expected_logits() -> np.ndarray:
    logits = samples("mlp_digits")[0]["outputs"]["logits"]
    return np.array(logits["data"], dtype=np.float32).reshape(logits["shape"])


def start(tmp: Path, pki: Pki, extra=(), env=None, probe_cert=None) -> Server:
    """A TLS server whose certificate files live in `tmp` (as `server.pem`/`server.key`)."""
    cert, key = pki.leaf("server", 1, dir=tmp)
    s = Server(
        binary_path(),
        extra=["--tls-cert", str(cert), "--tls-key", str(key), *extra],
        env=env,
        ssl_context=pki.context(probe_cert),
    )
    s.tls_dir = tmp
    return s


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keyed(pki, tmp_path_factory):
    """TLS with an API key from the environment; health probes stay open."""
    s = start(tmp_path_factory.mktemp("keyed"), pki, env={"MLPSERVE_API_KEYS": f"other-key,{KEY}"})
    yield s
    assert s.stop() == 0, s.logs()


def test_https_and_grpc_tls_infer_with_the_key(keyed, pki):
    h = http_client(keyed, pki)
    got = h.infer("mlp_digits", digits_inputs(httpclient), headers=auth()).as_numpy("logits")
    np.testing.assert_allclose(got, expected_logits(), rtol=1e-4, atol=1e-5)
    g = grpc_client(keyed, pki)
    got = g.infer("mlp_digits", digits_inputs(grpcclient), headers=auth()).as_numpy("logits")
    np.testing.assert_allclose(got, expected_logits(), rtol=1e-4, atol=1e-5)
    assert g.get_model_metadata("mlp_digits", headers=auth()).name == "mlp_digits"


def test_without_the_key_inference_and_metadata_are_refused_but_probes_are_open(keyed, pki):
    h = http_client(keyed, pki)
    g = grpc_client(keyed, pki)
    for bad in [None, "Bearer wrong"]:
        headers = lambda: {"authorization": bad} if bad else None  # noqa: E731 - fresh each call
        with pytest.raises(InferenceServerException) as e:
            h.infer("mlp_digits", digits_inputs(httpclient), headers=headers())
        assert "401" in str(e.value.status()) or "API key" in e.value.message()
        assert KEY not in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            g.infer("mlp_digits", digits_inputs(grpcclient), headers=headers())
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        assert KEY not in str(e.value)
        with pytest.raises(InferenceServerException):
            h.get_model_metadata("mlp_digits", headers=headers())
    assert h.is_server_live() and h.is_server_ready()
    assert g.is_server_live() and g.is_server_ready()
    assert KEY not in keyed.logs()


def test_rotated_certificate_reaches_new_connections_with_no_failed_request(keyed, pki):
    assert served_serial(pki, keyed.http) == 1
    failures, done = [], {"http": 0, "grpc": 0}
    stop = threading.Event()

    def grpc_loop():
        g = grpc_client(keyed, pki)
        while not stop.is_set():
            try:
                g.infer("mlp_digits", digits_inputs(grpcclient), headers=auth())
                done["grpc"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                failures.append(f"grpc: {e}")

    t = threading.Thread(target=grpc_loop)
    t.start()
    h = http_client(keyed, pki)

    def http_requests(n):
        for _ in range(n):
            try:
                h.infer("mlp_digits", digits_inputs(httpclient), headers=auth())
                done["http"] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"http: {e}")

    try:
        http_requests(20)
        pki.leaf("server", 2, dir=keyed.tls_dir)
        keyed.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_serial(pki, keyed.http) != 2:
            assert time.monotonic() < deadline, "the rotated certificate was never served"
            http_requests(5)
        assert served_serial(pki, keyed.grpc) == 2
        http_requests(20)
        # New clients after the rotation work too.
        http_client(keyed, pki).infer("mlp_digits", digits_inputs(httpclient), headers=auth())
        grpc_client(keyed, pki).infer("mlp_digits", digits_inputs(grpcclient), headers=auth())
    finally:
        stop.set()
        t.join()
    assert failures == [], failures[:5]
    assert done["http"] >= 40 and done["grpc"] > 0, done
    assert "TLS certificate reloaded" in keyed.logs()


@pytest.fixture(scope="module")
def mutual(pki, tmp_path_factory):
    """TLS that requires a client certificate signed by the test CA."""
    s = start(
        tmp_path_factory.mktemp("mtls"),
        pki,
        extra=["--tls-client-ca", str(pki.ca_path)],
        probe_cert=pki.leaf("probe", 11, client=True),
    )
    yield s
    assert s.stop() == 0, s.logs()


def test_mtls_serves_clients_with_a_certificate_and_refuses_others(mutual, pki):
    client_cert = pki.leaf("client", 10, client=True)
    # A certificate from another CA is no better than none.
    stranger = Pki(pki.dir / "stranger" if (pki.dir / "stranger").mkdir() is None else None)
    foreign_cert = stranger.leaf("client", 12, client=True)
    h = http_client(mutual, pki, client_cert)
    assert h.infer("mlp_digits", digits_inputs(httpclient)).as_numpy("logits") is not None
    g = grpc_client(mutual, pki, client_cert)
    assert g.infer("mlp_digits", digits_inputs(grpcclient)).as_numpy("logits") is not None

    for cert in [None, foreign_cert]:
        with pytest.raises(Exception):
            http_client(mutual, pki, cert).is_server_live()
        with pytest.raises(InferenceServerException) as e:
            grpc_client(mutual, pki, cert).is_server_live(client_timeout=5)
        assert e.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


def test_plain_text_clients_on_the_tls_ports_fail_fast(keyed):
    started = time.monotonic()
    # The HTTP client sees a TLS alert where it expected "HTTP/" (a parse error).
    with pytest.raises(Exception):
        httpclient.InferenceServerClient(url=keyed.http, network_timeout=20).is_server_live()
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(url=keyed.grpc).is_server_live(client_timeout=20)
    # Failing is not enough: it must not be a hang until the client's own timeout.
    assert time.monotonic() - started < 15

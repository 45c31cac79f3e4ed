"""DICOM over TLS: DCMTK storescu as the scanner, Orthanc with TLS as the PACS, certificates made by
deploy/make-certificates.sh exactly as the README tells a site to make them."""
import socket
import subprocess
from pathlib import Path

import pytest

from node.config import ConfigError, parse_config
from node.store.index import Index
from node.demo.local_pacs import Orthanc
from tests.conftest import node_config_dict, require_tool, storescu, wait_until
from tests.test_end_to_end import maps_in_orthanc

MAKE_CERTIFICATES = Path(__file__).parent.parent / "deploy" / "make-certificates.sh"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A site CA with the node (127.0.0.1) and a scanner; plus a rogue CA's scanner in rogue/."""
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("certificates")
    subprocess.run(["sh", str(MAKE_CERTIFICATES), str(directory), "127.0.0.1", "SCANNER"], check=True, timeout=120)
    subprocess.run(["sh", str(MAKE_CERTIFICATES), str(directory / "rogue"), "rogue.example", "SCANNER"], check=True,
                   timeout=120)
    return directory


def tls_section(certificates: Path, require_client_certificate: bool) -> dict:
    return {"certificate": str(certificates / "node.crt"), "private_key": str(certificates / "node.key"),
            "ca_certificates": str(certificates / "ca.crt"), "require_client_certificate": require_client_certificate}


def with_certificate(directory: Path, trusted_ca: Path) -> list[str]:
    """storescu options: present directory's SCANNER certificate, trust only trusted_ca for the node."""
    return ["+tls", str(directory / "SCANNER.key"), str(directory / "SCANNER.crt"), "+cf", str(trusted_ca)]


@pytest.mark.integration
def test_mutual_tls_serves_certified_scanners_and_refuses_everyone_else(tmp_path, make_node, ecv_study,
                                                                          certificates):
    _, _, files = ecv_study
    config = node_config_dict(tmp_path / "data")
    config["tls"] = tls_section(certificates, require_client_certificate=True)
    node = make_node(config)
    ca = certificates / "ca.crt"

    assert storescu(node.port, files[:1]).returncode != 0                                    # plain DICOM
    assert storescu(node.port, files[:1], extra=["+tla", "+cf", str(ca)]).returncode != 0    # TLS, no certificate
    rogue = with_certificate(certificates / "rogue", ca)
    assert storescu(node.port, files[:1], extra=rogue).returncode != 0                       # another CA's scanner
    assert Index(node.layout.index_path).status()["instances"] == 0

    # A client that connects and never says anything must not hold up the handshake of the others.
    with socket.create_connection(("127.0.0.1", node.port)):
        result = storescu(node.port, files, extra=with_certificate(certificates, ca))
    assert result.returncode == 0, result.stderr
    assert Index(node.layout.index_path).status()["instances"] == len(files)

    # The scanner checks the node too: a node certificate from a CA it does not trust is refused.
    untrusting = with_certificate(certificates, certificates / "rogue" / "ca.crt")
    assert storescu(node.port, files[:1], extra=untrusting).returncode != 0


@pytest.mark.integration
def test_tls_without_client_certificates_still_refuses_plain_dicom(tmp_path, make_node, ecv_study, certificates):
    _, _, files = ecv_study
    config = node_config_dict(tmp_path / "data")
    config["tls"] = tls_section(certificates, require_client_certificate=False)
    node = make_node(config)
    assert storescu(node.port, files[:1]).returncode != 0
    result = storescu(node.port, files, extra=["+tla", "+cf", str(certificates / "ca.crt")])
    assert result.returncode == 0, result.stderr
    assert Index(node.layout.index_path).status()["instances"] == len(files)


@pytest.mark.integration
def test_results_reach_a_tls_pacs(tmp_path, make_node, ecv_study, certificates):
    require_tool("Orthanc")
    # Orthanc runs on 127.0.0.1 too, so the node's certificate (server and client usage) serves it as well.
    pacs = Orthanc(tmp_path / "orthanc", tls={"Certificate": certificates / "node.crt",
                                             "PrivateKey": certificates / "node.key",
                                             "TrustedCertificates": certificates / "ca.crt"}).start()
    try:
        destination = {"name": "pacs", "host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.ae_title,
                       "tls": True}
        config = node_config_dict(tmp_path / "data", [destination])
        config["tls"] = {"certificate": str(certificates / "node.crt"), "private_key": str(certificates / "node.key"),
                         "ca_certificates": str(certificates / "ca.crt")}
        study, _, files = ecv_study
        node = make_node(config)
        result = storescu(node.port, files, extra=["+tla", "+cf", str(certificates / "ca.crt")])
        assert result.returncode == 0, result.stderr
        wait_until(lambda: maps_in_orthanc(pacs, study.study_uid), timeout=120, what="ECV map in the TLS PACS")
    finally:
        pacs.stop()


@pytest.mark.parametrize("tls, destination_tls, key", [
    ({"certificate": "missing.crt", "private_key": "missing.key"}, False, "[tls].certificate"),
    ({"require_client_certificate": True}, False, "[tls].require_client_certificate"),
    ({}, True, "[tls].ca_certificates"),
    ({"require_client_certificate": "yes"}, False, "[tls].require_client_certificate"),
])
def test_bad_tls_config_names_the_key(tls, destination_tls, key):
    destination = {"name": "p", "host": "h", "port": 104, "ae_title": "PACS", "tls": destination_tls}
    with pytest.raises(ConfigError) as info:
        parse_config({"tls": tls, "destinations": [destination]})
    assert key in str(info.value)


@pytest.mark.integration
def test_unusable_key_stops_the_node_with_a_message(tmp_path, certificates):
    from node.service import Node
    config = node_config_dict(tmp_path / "data")
    config["tls"] = {"certificate": str(certificates / "node.crt"), "private_key": str(certificates / "ca.crt")}
    with pytest.raises(ConfigError) as info:
        Node(parse_config(config))
    assert "[tls]" in str(info.value)


# ---- peers the node must refuse, on both sides --------------------------------------------------------------
CA_CONFIG = """[ca]
default_ca = site
[site]
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = anything
copy_extensions = copy
[anything]
commonName = supplied
"""


def expired_certificate(certificates: Path, name: str, usage: str, san: str) -> tuple[Path, Path]:
    """A certificate of the site CA that expired in 2020 (openssl ca with explicit dates)."""
    work = certificates / f"expired-{name}"
    work.mkdir(exist_ok=True)
    (work / "index.txt").write_text("")
    (work / "serial").write_text("1000\n")
    (work / "ca.cnf").write_text(CA_CONFIG.format(d=work))
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-addext",
                    f"subjectAltName={san}", "-addext", f"extendedKeyUsage={usage}", "-keyout", str(work / "k.pem"),
                    "-out", str(work / "r.csr")], check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "ca", "-batch", "-config", str(work / "ca.cnf"), "-cert", str(certificates / "ca.crt"),
                    "-keyfile", str(certificates / "ca.key"), "-in", str(work / "r.csr"), "-out", str(work / "c.pem"),
                    "-startdate", "200101000000Z", "-enddate", "200102000000Z"], check=True, capture_output=True,
                   timeout=60)
    return work / "c.pem", work / "k.pem"


class TlsPacs:
    """A storage SCP over TLS presenting the given certificate, optionally only up to TLS 1.1."""

    def __init__(self, certificate: Path, key: Path, old_tls_only: bool = False):
        import ssl
        from pydicom.uid import ExplicitVRLittleEndian
        from pynetdicom import AE, evt
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        if old_tls_only:
            context.minimum_version, context.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.context = context
        self.stored = []
        ae = AE(ae_title="TLSPACS")
        ae.add_supported_context("1.2.840.10008.5.1.4.1.1.4", [ExplicitVRLittleEndian])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context,
                                      evt_handlers=[(evt.EVT_C_STORE, lambda e: self.stored.append(1) or 0x0000)])
        self.port = self.server.server_address[1]


def node_associates(certificates: Path, pacs: TlsPacs) -> bool:
    """Whether the node's own TLS client (what the dispatcher uses) gets an association with the PACS."""
    from node.config import TlsSettings
    from node.network.scu import open_association
    from node.network.tls import client_context
    context = client_context(TlsSettings(certificate=certificates / "node.crt", private_key=certificates / "node.key",
                                         ca_certificates=certificates / "ca.crt"))
    try:
        open_association("CMRNODE", "127.0.0.1", pacs.port, "TLSPACS", ["1.2.840.10008.5.1.4.1.1.4"],
                         tls_context=context).release()
        return True
    except ConnectionError:
        return False


@pytest.mark.integration
def test_the_node_refuses_a_pacs_it_cannot_trust(certificates, tmp_path):
    """Destination side: a PACS certificate for another host name, from an untrusted CA, expired, or a PACS
    that speaks only TLS 1.0/1.1: no association. The same harness with the right certificate associates."""
    import ssl
    good = TlsPacs(certificates / "node.crt", certificates / "node.key")
    other_host = certificates / "other-host"
    other_host.mkdir(exist_ok=True)
    bad = {
        "another host name": TlsPacs(*_site_certificate(certificates, other_host, "pacs.elsewhere.example")),
        "untrusted CA": TlsPacs(certificates / "rogue" / "node.crt", certificates / "rogue" / "node.key"),
        "expired": TlsPacs(*expired_certificate(certificates, "127.0.0.1", "serverAuth,clientAuth", "IP:127.0.0.1")),
        "TLS 1.0/1.1 only": TlsPacs(certificates / "node.crt", certificates / "node.key", old_tls_only=True),
    }
    try:
        assert node_associates(certificates, good)
        for why, pacs in bad.items():
            assert not node_associates(certificates, pacs), why
            assert pacs.stored == []
        # the old-TLS PACS is a real TLS 1.1 peer: a client that still allows TLS 1.1 gets through
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.check_hostname, legacy.verify_mode = False, ssl.CERT_NONE
        legacy.minimum_version = ssl.TLSVersion.TLSv1
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", bad["TLS 1.0/1.1 only"].port), timeout=10) as raw:
            with legacy.wrap_socket(raw) as tls:
                assert tls.version() in ("TLSv1", "TLSv1.1")
    finally:
        for pacs in [good, *bad.values()]:
            pacs.server.shutdown()


def _site_certificate(certificates: Path, directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate of the site CA (trusted by the node) for host."""
    key, request, certificate = directory / "pacs.key", directory / "pacs.csr", directory / "pacs.crt"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-addext",
                    f"subjectAltName=DNS:{host}", "-keyout", str(key), "-out", str(request)], check=True,
                   capture_output=True, timeout=60)
    (directory / "ext").write_text(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(certificates / "ca.crt"), "-CAkey",
                    str(certificates / "ca.key"), "-CAcreateserial", "-days", "30", "-extfile", str(directory / "ext"),
                    "-out", str(certificate)], check=True, capture_output=True, timeout=60)
    return certificate, key


@pytest.mark.integration
def test_the_listener_refuses_expired_and_old_tls_clients(tmp_path, make_node, ecv_study, certificates):
    """Listener side (mutual TLS): a scanner certificate of the site CA that expired, and a client that speaks
    only TLS 1.0/1.1, are refused; a client's host name is not checked by DICOM servers, so there is no
    'another host name' case here. The untrusted CA's scanner is refused in the test above."""
    import ssl
    _, _, files = ecv_study
    config = node_config_dict(tmp_path / "data")
    config["tls"] = tls_section(certificates, require_client_certificate=True)
    node = make_node(config)
    certificate, key = expired_certificate(certificates, "SCANNER", "clientAuth", "DNS:SCANNER")
    expired = ["+tls", str(key), str(certificate), "+cf", str(certificates / "ca.crt")]
    assert storescu(node.port, files[:1], extra=expired).returncode != 0

    def handshake(maximum):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(certificates / "ca.crt")
        context.load_cert_chain(certificates / "SCANNER.crt", certificates / "SCANNER.key")
        context.minimum_version, context.maximum_version = ssl.TLSVersion.TLSv1, maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"")      # the node defers its handshake to the association thread
                return tls.version()
    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"        # the harness reaches the node
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        handshake(ssl.TLSVersion.TLSv1_1)
    assert Index(node.layout.index_path).status()["instances"] == 0

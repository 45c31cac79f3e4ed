"""DICOM over TLS: DCMTK storescu as the scanner, Orthanc with TLS as the PACS, certificates made by
deploy/make-certificates.sh exactly as the README tells a site to make them."""
import socket
import subprocess
from pathlib import Path

import pytest

from node.config import ConfigError, parse_config
from node.index import Index
from node.local_pacs import Orthanc
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


def test_tls_without_client_certificates_still_refuses_plain_dicom(tmp_path, make_node, ecv_study, certificates):
    _, _, files = ecv_study
    config = node_config_dict(tmp_path / "data")
    config["tls"] = tls_section(certificates, require_client_certificate=False)
    node = make_node(config)
    assert storescu(node.port, files[:1]).returncode != 0
    result = storescu(node.port, files, extra=["+tla", "+cf", str(certificates / "ca.crt")])
    assert result.returncode == 0, result.stderr
    assert Index(node.layout.index_path).status()["instances"] == len(files)


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


def test_unusable_key_stops_the_node_with_a_message(tmp_path, certificates):
    from node.service import Node
    config = node_config_dict(tmp_path / "data")
    config["tls"] = {"certificate": str(certificates / "node.crt"), "private_key": str(certificates / "ca.crt")}
    with pytest.raises(ConfigError) as info:
        Node(parse_config(config))
    assert "[tls]" in str(info.value)

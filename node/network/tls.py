"""TLS for DICOM (PS3.15 Annex B, BCP 195): contexts for the listener and for TLS destinations.

TLS 1.2 or newer only. The listener's certificate and key come from [tls]; ca_certificates verifies
client certificates (mutual TLS when require_client_certificate) and the certificates of destinations
with tls = true, whose host name must match their certificate.
"""
from __future__ import annotations

import ssl

from node.config import ConfigError, TlsSettings


class _HandshakeInAssociationThread(ssl.SSLContext):
    """A handshake in the accept loop would let one client that connects and stays silent stall every
    scanner: the listener (node/receive/listener.py) wraps and shakes hands on the association's own thread,
    under its own timeout; a socket wrapped anywhere else with this context defers its handshake too."""

    def wrap_socket(self, sock, server_side=False, **kwargs):
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, server_side=server_side, **kwargs)


def _load(context: ssl.SSLContext, tls: TlsSettings) -> ssl.SSLContext:
    """Certificates into context; the configuration has already checked which ones each use needs."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.certificate:
            context.load_cert_chain(tls.certificate, tls.private_key)
        if tls.ca_certificates:
            context.load_verify_locations(cafile=str(tls.ca_certificates))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"[tls]: certificate, private_key or ca_certificates not usable: {exc}") from None
    return context


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The listener's context; client certificates are required when require_client_certificate."""
    context = _load(_HandshakeInAssociationThread(ssl.PROTOCOL_TLS_SERVER), tls)
    if tls.require_client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED
    elif tls.ca_certificates:
        context.verify_mode = ssl.CERT_OPTIONAL   # a certificate offered must still be valid
    return context


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """For destinations with tls = true: verify the PACS against ca_certificates, present ours if any."""
    context = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), tls)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context

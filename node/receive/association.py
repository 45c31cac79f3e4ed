"""One association accepted by the listener: negotiation, then C-STORE and C-ECHO until release or abort.

The Upper Layer protocol of PS3.8 for the acceptor side of a storage SCP. pynetdicom's PDU codec and its
presentation-context negotiation are used for the A-ASSOCIATE exchange (once per association); the data
transfer phase (per image) reads P-DATA-TF PDUs straight from the socket on the association's own thread.
pynetdicom's own loop passes every PDU through a second thread, a state machine, event queues polled every
millisecond and pydicom datasets for the command sets, which made it 3-4 ms of CPU per image: more than
the node's header checks, file and index together.
"""
from __future__ import annotations

import logging
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (A_ASSOCIATE, ImplementationClassUIDNotification,
                                       ImplementationVersionNameNotification, MaximumLengthNotification,
                                       SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from node.network import status
from node.receive.dimse import C_ECHO_RQ, C_STORE_RQ, Command, MalformedCommand, decode_command, encode_response

log = logging.getLogger("cmr_node.receive")

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"      # DICOM Application Context Name (PS3.7 A.2.1)
VERIFICATION = "1.2.840.10008.1.1"
# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF = 0x01, 0x02, 0x03, 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07
# A-ABORT reasons when the service provider aborts (PS3.8 Table 9-26)
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PARAMETER_VALUE = 0x01, 0x02, 0x06
# A-ASSOCIATE-RJ (result, source, diagnostic) (PS3.8 Table 9-21)
REJECT_NO_REASON = (0x01, 0x01, 0x01)
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)

# An A-ASSOCIATE-RQ with every storage SOP class and many transfer syntaxes is well under this.
MAX_ASSOCIATE_RQ_BYTES = 1024 * 1024
MAX_PDU_BYTES = 4 * 1024 * 1024     # what the node announces: fewer, larger reads per image
# Far above any CMR object (an enhanced multi-frame 4D flow series is a few hundred MB), far below what a
# worker's memory can hold: a data set is kept in memory until its last fragment.
MAX_DATASET_BYTES = 1024 * 1024 * 1024
MIN_PEER_PDU_BYTES = 7              # a PDV item's header is 6 bytes: a smaller maximum cannot carry anything
ACSE_TIMEOUT_SECONDS = 30           # the A-ASSOCIATE-RQ must come within this (pynetdicom's default)
NETWORK_TIMEOUT_SECONDS = 60        # an association silent this long is aborted (pynetdicom's default)
# After its last PDU (reject, abort, release response) the node reads what the peer still sends, for this long at
# most, before it closes: closing with unread bytes would reset the connection and the peer might never read why.
LINGER_SECONDS = 2


class ProtocolError(Exception):
    """The peer broke the Upper Layer protocol: the association is aborted with this reason."""

    def __init__(self, reason: int, what: str):
        super().__init__(what)
        self.reason = reason


class PeerGone(Exception):
    """The connection closed or went silent."""


@dataclass
class Peer:
    ae_title: str
    address: str
    port: int


@dataclass
class StoreRequest:
    command: Command
    transfer_syntax: str
    fragments: list        # the data set's bytes as received, in order (bytes-like objects)


@dataclass
class AcceptedAssociation:
    peer: Peer
    contexts: dict[int, PresentationContext]       # accepted, by context ID
    peer_max_pdu: int                               # 0: no limit
    brought: dict = field(default_factory=lambda: {"instances": 0, "bytes": 0, "rejected": 0, "studies": {}})


class AssociationSlots(Protocol):
    """At most so many associations at a time: reserve() before accepting one, release() when it ends."""

    def reserve(self) -> bool: ...
    def release(self) -> None: ...


class Services(Protocol):
    """What the listener's owner decides; called on the association's thread."""

    def refusal(self, peer: Peer) -> tuple[int, int, int] | None: ...
    def accepted(self, association: AcceptedAssociation) -> None: ...
    def echo(self, association: AcceptedAssociation) -> int: ...
    def store(self, association: AcceptedAssociation, request: StoreRequest) -> tuple[int, str | None]: ...
    def ended(self, association: AcceptedAssociation, how: str) -> None: ...


# -- PDU framing (PS3.8 9.3) -------------------------------------------------------------------------------------
def _receive_exactly(sock: socket.socket, count: int, deadline: float | None = None) -> bytearray:
    """count bytes; with a deadline (time.monotonic()), all of them by then, however slowly they trickle."""
    buffer = bytearray(count)
    view, received = memoryview(buffer), 0
    while received < count:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerGone("timed out")
            sock.settimeout(remaining)
        try:
            chunk = sock.recv_into(view[received:])
        except (socket.timeout, TimeoutError):
            raise PeerGone("timed out") from None
        except OSError as exc:
            raise PeerGone(str(exc)) from None
        if chunk == 0:
            raise PeerGone("connection closed")
        received += chunk
    return buffer


def read_pdu(sock: socket.socket, limit: int, deadline: float | None = None) -> tuple[int, bytearray]:
    """(PDU type, body) of the next PDU; a declared length over limit is refused before anything is allocated."""
    header = _receive_exactly(sock, 6, deadline)
    kind, length = header[0], struct.unpack_from(">I", header, 2)[0]
    if kind not in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT):
        raise ProtocolError(UNRECOGNIZED_PDU, f"unknown PDU type 0x{kind:02X}")
    if length > limit:
        raise ProtocolError(INVALID_PARAMETER_VALUE, f"PDU of {length} bytes, more than {limit}")
    return kind, _receive_exactly(sock, length, deadline)


def _short_pdu(kind: int, a: int = 0, b: int = 0, c: int = 0) -> bytes:
    """A-ASSOCIATE-RJ, A-RELEASE-RP or A-ABORT: a 4-byte body (PS3.8 Tables 9-21, 9-25, 9-26)."""
    return struct.pack(">BBIBBBB", kind, 0, 4, 0, a, b, c)


def p_data_pdus(context_id: int, command: bytes, max_pdu: int) -> list[bytes]:
    """A command set as P-DATA-TF PDUs no longer than the peer accepts (PS3.8 9.3.5, Annex E)."""
    room = (max_pdu - 6) if max_pdu else len(command)      # 6: the PDV item's length, context ID and control
    pieces = [command[k:k + room] for k in range(0, len(command), max(room, 1))]
    pdus = []
    for k, piece in enumerate(pieces):
        control = 0x01 | (0x02 if k == len(pieces) - 1 else 0)
        item = struct.pack(">IBB", len(piece) + 2, context_id, control) + piece
        pdus.append(struct.pack(">BBI", P_DATA_TF, 0, len(item)) + item)
    return pdus


# -- negotiation ---------------------------------------------------------------------------------------------------
def _accept_pdu(request: A_ASSOCIATE, results: list[PresentationContext], roles: list) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title, primitive.called_ae_title = request.calling_ae_title, request.called_ae_title
    primitive.result, primitive.result_source = 0x00, 0x01
    primitive.presentation_context_definition_results_list = results
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = MAX_PDU_BYTES
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [maximum, implementation, version, *roles]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _decode_request(body: bytearray) -> tuple[A_ASSOCIATE, int]:
    """The A-ASSOCIATE primitive of an A-ASSOCIATE-RQ body, and its protocol version."""
    pdu = A_ASSOCIATE_RQ()
    try:
        pdu.decode(struct.pack(">BBI", ASSOCIATE_RQ, 0, len(body)) + bytes(body))
        return pdu.to_primitive(), pdu.protocol_version
    except Exception as exc:     # pynetdicom's decoder raises many types on malformed bytes
        raise ProtocolError(INVALID_PARAMETER_VALUE, f"A-ASSOCIATE-RQ not decodable: {type(exc).__name__}") from None


class Acceptor:
    """Serves one connection from its A-ASSOCIATE-RQ to its end; owns nothing but the socket."""

    def __init__(self, sock: socket.socket, address: tuple[str, int], supported: list[PresentationContext],
                 services: Services, slots: "AssociationSlots"):
        self.sock, self.services, self.slots = sock, services, slots
        self.address = address
        self.supported = supported
        self.association: AcceptedAssociation | None = None
        self._slot = False       # a slot reserved, to release when the connection ends

    def serve(self) -> None:
        how = "aborted"
        try:
            self.association = self._negotiate()
            if self.association is not None:
                self.sock.settimeout(NETWORK_TIMEOUT_SECONDS)
                how = self._transfer(self.association)
        except ProtocolError as exc:
            log.warning("aborting association from %s: %s", self.address[0], exc)
            self._send_quietly(_short_pdu(ABORT, 0, 0x02, exc.reason))
        except PeerGone:
            pass
        except Exception:   # a defect here must still end the association properly, and the node goes on
            log.exception("aborting association from %s after an internal error", self.address[0])
            self._send_quietly(_short_pdu(ABORT, 0, 0x02, 0x00))
        finally:
            if self._slot:
                self.slots.release()
            if self.association is not None:
                self.services.ended(self.association, how)
        self._linger()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:       # reset, or a peer that stopped reading until the timeout
            raise PeerGone(str(exc)) from None

    def _linger(self) -> None:
        """Half-close, then read and drop what the peer still sends until it closes or LINGER_SECONDS pass."""
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LINGER_SECONDS)
            while self.sock.recv(65536) and time.monotonic() < deadline:
                pass
        except (OSError, ValueError):    # timed out, reset, or a TLS socket already unwrapped
            pass

    def _send_quietly(self, data: bytes) -> None:
        """For a last word (a reject, an abort, a release response): a peer already gone changes nothing."""
        try:
            self._send(data)
        except PeerGone:
            pass

    def _negotiate(self) -> AcceptedAssociation | None:
        # the ARTIM timer (PS3.8 9.1.5): the whole request within ACSE_TIMEOUT_SECONDS of the connection
        kind, body = read_pdu(self.sock, MAX_ASSOCIATE_RQ_BYTES, time.monotonic() + ACSE_TIMEOUT_SECONDS)
        if kind == ABORT:
            raise PeerGone("A-ABORT before A-ASSOCIATE-RQ")      # close, answer nothing (PS3.8 9.2, AA-2)
        if kind != ASSOCIATE_RQ:
            raise ProtocolError(UNEXPECTED_PDU, f"PDU type 0x{kind:02X} before A-ASSOCIATE-RQ")
        request, version = _decode_request(body)
        peer = Peer(str(request.calling_ae_title).strip(), self.address[0], self.address[1])
        refusal = self._refusal(request, version, peer)
        if refusal is not None:
            self._send_quietly(_short_pdu(ASSOCIATE_RJ, *refusal))
            return None
        rq_roles = {item.sop_class_uid: (item.scu_role, item.scp_role) for item in request.user_information
                    if isinstance(item, SCP_SCU_RoleSelectionNegotiation)}
        results, roles = negotiate_as_acceptor(request.presentation_context_definition_list, self.supported,
                                               rq_roles)
        peer_max_pdu = int(request.maximum_length_received or 0)
        if 0 < peer_max_pdu < MIN_PEER_PDU_BYTES:
            raise ProtocolError(INVALID_PARAMETER_VALUE, f"maximum PDU length {peer_max_pdu}")
        association = AcceptedAssociation(peer, {cx.context_id: cx for cx in results if cx.result == 0x00},
                                          peer_max_pdu)
        self._send(_accept_pdu(request, results, roles))
        self.services.accepted(association)
        return association

    def _refusal(self, request: A_ASSOCIATE, version: int, peer: Peer) -> tuple[int, int, int] | None:
        if not version & 0x0001:
            return REJECT_PROTOCOL_VERSION
        if str(request.application_context_name) != APPLICATION_CONTEXT:
            return REJECT_APPLICATION_CONTEXT
        refused = self.services.refusal(peer)
        if refused is not None:
            return refused
        self._slot = self.slots.reserve()      # released when the connection ends (serve)
        if not self._slot:
            log.warning("association from AE %s refused: all association slots busy", peer.ae_title)
            return REJECT_LOCAL_LIMIT
        return None

    # -- data transfer ---------------------------------------------------------------------------------------------
    def _transfer(self, association: AcceptedAssociation) -> str:
        """Messages until A-RELEASE-RQ ('released') or A-ABORT ('aborted')."""
        command_bytes: list = []
        command: Command | None = None
        dataset: list = []
        dataset_bytes = 0
        context_id = None
        while True:
            kind, body = read_pdu(self.sock, MAX_PDU_BYTES)
            if kind == RELEASE_RQ:
                self._send_quietly(_short_pdu(RELEASE_RP))
                return "released"
            if kind == ABORT:
                return "aborted"
            if kind != P_DATA_TF:
                raise ProtocolError(UNEXPECTED_PDU, f"PDU type 0x{kind:02X} during data transfer")
            for pdv_context, control, value in _pdvs(body):
                if pdv_context not in association.contexts or (context_id is not None and pdv_context != context_id):
                    raise ProtocolError(INVALID_PARAMETER_VALUE, f"PDV on presentation context {pdv_context}")
                context_id = pdv_context
                is_command, is_last = control & 0x01, control & 0x02
                if is_command:
                    if command is not None:
                        raise ProtocolError(INVALID_PARAMETER_VALUE, "command fragment inside a data set")
                    command_bytes.append(value)
                    if not is_last:
                        continue
                    try:
                        command = decode_command(b"".join(command_bytes))
                    except MalformedCommand as exc:
                        raise ProtocolError(INVALID_PARAMETER_VALUE, f"command set: {exc}") from None
                    if command.has_dataset:
                        continue
                elif command is None:
                    raise ProtocolError(INVALID_PARAMETER_VALUE, "data set fragment before its command")
                else:
                    dataset.append(value)
                    dataset_bytes += len(value)
                    if dataset_bytes > MAX_DATASET_BYTES:
                        raise ProtocolError(INVALID_PARAMETER_VALUE, f"data set over {MAX_DATASET_BYTES} bytes")
                    if not is_last:
                        continue
                self._answer(association, context_id, command, dataset)
                command_bytes, command, dataset, dataset_bytes, context_id = [], None, [], 0, None

    def _answer(self, association: AcceptedAssociation, context_id: int, command: Command, dataset: list) -> None:
        context = association.contexts[context_id]
        if command.field == C_ECHO_RQ and str(context.abstract_syntax) == VERIFICATION:
            answer: tuple[int, str | None] = (self.services.echo(association), None)
        elif command.field == C_STORE_RQ and command.sop_class_uid != str(context.abstract_syntax):
            answer = (status.SOP_CLASS_NOT_SUPPORTED, "SOP Class not that of the presentation context")
        elif command.field == C_STORE_RQ and command.has_dataset:
            request = StoreRequest(command, str(context.transfer_syntax[0]), dataset)
            answer = self.services.store(association, request)
        elif command.field == C_STORE_RQ:
            answer = (status.CANNOT_UNDERSTAND, "C-STORE without a data set")
        else:
            raise ProtocolError(INVALID_PARAMETER_VALUE,
                                f"DIMSE command 0x{command.field:04X} on {context.abstract_syntax}")
        response = encode_response(command, *answer)
        self._send(b"".join(p_data_pdus(context_id, response, association.peer_max_pdu)))


def _pdvs(body: bytearray):
    """(context ID, message control header, value) of each PDV item of a P-DATA-TF body (PS3.8 9.3.5.1)."""
    view, offset, end = memoryview(body), 0, len(body)
    if end == 0:
        raise ProtocolError(INVALID_PARAMETER_VALUE, "P-DATA-TF without a PDV")
    while offset < end:
        if offset + 6 > end:
            raise ProtocolError(INVALID_PARAMETER_VALUE, "PDV item cut short")
        length = struct.unpack_from(">I", body, offset)[0]
        if length < 2 or offset + 4 + length > end:
            raise ProtocolError(INVALID_PARAMETER_VALUE, f"PDV item length {length} does not fit its PDU")
        yield body[offset + 4], body[offset + 5], view[offset + 6:offset + 4 + length]
        offset += 4 + length

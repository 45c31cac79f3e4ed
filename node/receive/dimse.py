"""DIMSE command sets of the two services the listener provides: C-STORE and C-ECHO (PS3.7 9.3.1, 9.3.5).

A command set is group 0000 in Implicit VR Little Endian, a flat list of elements (PS3.7 6.3.1). Decoding
one with pydicom and encoding its response through a validated Dataset cost pynetdicom about 2 ms of CPU
per image, a third of the receive budget; the elements are few and fixed, so they are read and packed
here directly.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from node.receive.part10 import padded

# Command Field values (PS3.7 Table E.1-1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101             # Command Data Set Type: no data set follows (PS3.7 Table E.1-1)

# (0000,eeee) elements read or written
_GROUP_LENGTH = 0x0000
_AFFECTED_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
_DATASET_TYPE = 0x0800
_STATUS = 0x0900
_ERROR_COMMENT = 0x0902
_AFFECTED_SOP_INSTANCE = 0x1000
_MAX_COMMENT = 64               # Error Comment is LO


class MalformedCommand(ValueError):
    """The command set cannot be read: the association is aborted, there is no message to answer."""


@dataclass(frozen=True)
class Command:
    field: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    has_dataset: bool


def _uid(value: bytes) -> str:
    try:
        return value.rstrip(b"\x00 ").decode("ascii")
    except UnicodeDecodeError:
        raise MalformedCommand("a UID that is not ASCII") from None


def _us(elements: dict[int, bytes], element: int) -> int:
    value = elements.get(element)
    if value is None or len(value) != 2:
        raise MalformedCommand(f"(0000,{element:04X}) missing or not US")
    return struct.unpack("<H", value)[0]


def decode_command(data: bytes) -> Command:
    """The fields of a request's command set that the listener acts on."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise MalformedCommand("command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            raise MalformedCommand(f"element ({group:04X},{element:04X}) outside the command group or cut short")
        elements[element] = bytes(data[offset:offset + length])
        offset += length
    return Command(field=_us(elements, _COMMAND_FIELD), message_id=_us(elements, _MESSAGE_ID),
                   sop_class_uid=_uid(elements.get(_AFFECTED_SOP_CLASS, b"")),
                   sop_instance_uid=_uid(elements.get(_AFFECTED_SOP_INSTANCE, b"")),
                   has_dataset=_us(elements, _DATASET_TYPE) != NO_DATASET)


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def encode_response(request: Command, status: int, comment: str | None = None) -> bytes:
    """The C-STORE-RSP or C-ECHO-RSP command set answering request (PS3.7 Tables 9.3-2 and 9.3-13)."""
    response_field = {C_STORE_RQ: C_STORE_RSP, C_ECHO_RQ: C_ECHO_RSP}[request.field]
    elements = [_element(_AFFECTED_SOP_CLASS, padded(request.sop_class_uid, b"\x00")),
                _element(_COMMAND_FIELD, struct.pack("<H", response_field)),
                _element(_MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", request.message_id)),
                _element(_DATASET_TYPE, struct.pack("<H", NO_DATASET)),
                _element(_STATUS, struct.pack("<H", status))]
    if comment:
        elements.append(_element(_ERROR_COMMENT, padded(comment[:_MAX_COMMENT], b" ")))
    if request.field == C_STORE_RQ:
        elements.append(_element(_AFFECTED_SOP_INSTANCE, padded(request.sop_instance_uid, b"\x00")))
    body = b"".join(elements)
    return _element(_GROUP_LENGTH, struct.pack("<I", len(body))) + body

"""What a backfill asks an archive for and takes from its answers (no network)."""
from datetime import date

import pytest

from node.backfill.archive import ArchiveError, ArchiveSeries, date_range, split_multipart
from node.backfill.driver import route_modalities, series_wanted
from node.config import builtin_routes, parse_config


def series(modality="MR", description="MOLLI_pre_MOCO_T1") -> ArchiveSeries:
    return ArchiveSeries("1.2.3", modality, description, "10", "Siemens", 8)


def test_date_range_is_inclusive_and_open_ended_without_until():
    # PS3.4 C.2.2.2.5: "YYYYMMDD-" matches that date and later; "A-B" both ends inclusive
    assert date_range(date(2024, 1, 5), None) == "20240105-"
    assert date_range(date(2024, 1, 5), date(2024, 2, 1)) == "20240105-20240201"


def test_builtin_routes_take_mr_and_drawn_regions_never_reports():
    config = parse_config({})
    assert route_modalities(config) == {"MR", "SEG"}
    oximetry = parse_config({"routes": [{"name": "oxi", "module": "oximetry", "series_description": "t2prep"}]})
    assert route_modalities(oximetry) == {"MR", "SEG", "RTSTRUCT"}    # its coronary sinus may be drawn either way
    assert series_wanted(series(), config, None)
    assert series_wanted(series("SEG", "LV myocardium"), config, None)
    assert not series_wanted(series("SR", "ECV report (cmr-node)"), config, None)
    assert not series_wanted(series("CT"), config, None)


def test_series_description_rules_of_routes_and_of_the_command_both_hold():
    only_t1 = parse_config({"routes": [{"name": "ecv", "module": "ecv", "series_description": "(?i)moco_t1"}]})
    assert series_wanted(series(), only_t1, None)
    assert not series_wanted(series(description="LGE_PSIR"), only_t1, None)
    import re
    config = parse_config({"routes": builtin_routes()})
    assert not series_wanted(series(description="T2map_MOCO"), config, re.compile("MOLLI"))
    assert series_wanted(series(), config, re.compile("MOLLI"))


def test_multipart_parts_come_back_byte_for_byte():
    # RFC 2387 body: each part has headers, a blank line, the bytes, CRLF, then the next delimiter
    first, second = b"DICM\r\n\x00\x01--not-the-boundary\r\n", b"\x00" * 10 + b"\r\n\r\n"
    body = (b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + first + b"\r\n"
            b"--XYZ\r\nContent-Type: application/dicom\r\nContent-Length: 14\r\n\r\n" + second + b"\r\n--XYZ--\r\n")
    parts = list(split_multipart(body, 'multipart/related; type="application/dicom"; boundary=XYZ'))
    assert parts == [first, second]


def test_a_response_that_is_not_multipart_is_an_archive_error():
    with pytest.raises(ArchiveError, match="not multipart/related"):
        list(split_multipart(b"{}", "application/json"))

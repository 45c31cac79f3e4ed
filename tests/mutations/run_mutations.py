"""Mutation check, run on demand (not in CI): one-line breaks of the receive, store, dispatch, TLS, registry,
scanner-convention, output and physics code, each applied to a copy of the repository, and the tests meant
to guard it run against the copy. A mutant is caught when one of those tests fails.

    .venv/bin/python tests/mutations/run_mutations.py [--only AREA] [--json report.json]

Prints one line per mutant and a table per area (the README quotes it). A surviving mutant is a promise no
test holds: add the test, or explain in the README why the break is harmless.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    area: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    # -- receive ------------------------------------------------------------------------------------------
    Mutant("receive", "no Rows/Columns limit", "node/receive/receiver.py",
           "0 < int(rows or 0) <= MAX_ROWS_COLUMNS and 0 < int(columns or 0) <= MAX_ROWS_COLUMNS",
           "0 < int(rows or 0) and 0 < int(columns or 0)", ("tests/test_fuzz.py",)),
    Mutant("receive", "no frame-count limit", "node/receive/receiver.py", "if not 0 < frames <= MAX_FRAMES:",
           "if not 0 < frames:", ("tests/test_fuzz.py",)),
    Mutant("receive", "no SOP-class mismatch check (0xA900)", "node/receive/receiver.py",
           'if values["SOPClassUID"] is not None and str(values["SOPClassUID"]) != affected_sop_class:',
           "if False:", ("tests/test_fuzz.py",)),
    Mutant("receive", "no truncation check", "node/receive/receiver.py",
           "    deflated = syntax is not None and syntax.is_deflated   # positions then refer to the inflated stream",
           "    return", ("tests/test_fuzz.py", "tests/test_receive.py")),
    Mutant("receive", "no Pixel Data length check", "node/receive/receiver.py",
           "if bits == 0 or length not in (expected, expected + expected % 2):", "if bits == 0:",
           ("tests/test_fuzz.py",)),
    Mutant("receive", "Success without indexing", "node/receive/receiver.py", "    index.record_instance(record)\n",
           "    pass\n", ("tests/test_receive.py",)),
    Mutant("receive", "Patient ID in the DEBUG 'stored' line", "node/receive/receiver.py",
           'log.debug("stored %s (series %s, %d bytes)", record.sop_instance_uid, record.series_uid, record.size)',
           'log.debug("stored %s (series %s, %d bytes) %s", record.sop_instance_uid, record.series_uid, record.size, '
           'ds.get("PatientID"))', ("tests/test_promises.py::test_no_patient_data_in_any_log_line_at_debug",)),
    Mutant("receive", "birth date in a rejection warning", "node/receive/receiver.py",
           'f"absurd image size {rows} x {columns}"', 'f"absurd image size {rows} x {columns} {ds.get(\'PatientBirthDate\')}"',
           ("tests/test_promises.py::test_no_patient_data_in_any_log_line_at_debug",)),
    Mutant("receive", "a response to message 1 whatever was asked", "node/receive/dimse.py",
           '_element(_MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", request.message_id))',
           '_element(_MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", 1))', ("tests/test_receive_path.py",)),
    Mutant("receive", "every association to the first receive worker", "node/receive/workers.py",
           "worker = min(alive, key=lambda w: w.open)", "worker = alive[0]",
           ("tests/test_receive.py::test_receive_workers_share_the_associations_and_their_counts",)),
    Mutant("receive", "C-STORE of any SOP class on any context", "node/receive/association.py",
           "        elif command.field == C_STORE_RQ and command.sop_class_uid != str(context.abstract_syntax):",
           "        elif False:", ("tests/test_acceptor.py",)),
    Mutant("receive", "no limit on associations at a time", "node/receive/listener.py",
           "            if self._serving >= self.maximum:", "            if False:", ("tests/test_acceptor.py",)),
    Mutant("receive", "the ACSE timeout per byte, not for the whole request", "node/receive/association.py",
           "        kind, body = read_pdu(self.sock, MAX_ASSOCIATE_RQ_BYTES, time.monotonic() + ACSE_TIMEOUT_SECONDS)",
           "        self.sock.settimeout(ACSE_TIMEOUT_SECONDS)\n"
           "        kind, body = read_pdu(self.sock, MAX_ASSOCIATE_RQ_BYTES)", ("tests/test_acceptor.py",)),
    # -- store ----------------------------------------------------------------------------------------------
    Mutant("store", "no flush of the file", "node/store/layout.py", "        os.fdatasync(fd)", "        pass",
           ("tests/test_durability.py",)),
    Mutant("store", "no fsync of its directory", "node/store/layout.py",
           "    _directory_flushes.flush(str(target.parent), _fsync_dir)", "    pass", ("tests/test_durability.py",)),
    Mutant("store", "new series and study folders' entries not flushed", "node/store/layout.py",
           "    for directory in (target.parent, target.parent.parent):\n        _flush_entry_of(directory)",
           "    pass", ("tests/test_durability.py",)),
    Mutant("store", "index rows a power cut took not rebuilt at start", "node/service.py",
           "        recovered = index_unindexed_files(self.layout, self.index)", "        recovered = 0",
           ("tests/test_receive.py::test_index_rows_a_power_cut_took_are_rebuilt_from_the_files_at_start",)),
    Mutant("store", "a group flush that covers callers who came after it began", "node/store/group_commit.py",
           "                if key not in self._running:\n                    break",
           "                if True:\n                    break", ("tests/test_receive_path.py",)),
    Mutant("store", "a UID with '/' becomes a path", "node/store/layout.py", 'return isinstance(value, str) and 0 < len(value) <= 64 '
           'and bool(_UID.match(value))', 'return isinstance(value, str) and 0 < len(value)', ("tests/test_store_index.py",)),
    # -- dispatch -------------------------------------------------------------------------------------------
    Mutant("dispatch", "every output sent twice", "node/dispatch/dispatcher.py", "        response = assoc.send_c_store(ds)",
           "        assoc.send_c_store(ds)\n        response = assoc.send_c_store(ds)",
           ("tests/test_end_to_end.py::test_every_output_reaches_the_pacs_exactly_once_through_an_outage",)),
    Mutant("dispatch", "a refusal counts as delivered", "node/dispatch/dispatcher.py",
           "    if code is not None and status.is_stored(code):", "    if code is not None:",
           ("tests/test_end_to_end.py::test_an_instance_the_pacs_refuses_holds_back_the_rest_of_its_study",)),
    Mutant("dispatch", "no backoff", "node/dispatch/dispatcher.py",
           "    return min(settings.retry_base_seconds * 2 ** (attempts - 1), settings.retry_max_seconds)",
           "    return settings.retry_base_seconds", ("tests/test_store_index.py",)),
    # -- TLS ------------------------------------------------------------------------------------------------
    Mutant("tls", "no host name check of the PACS", "node/network/tls.py", "    context.check_hostname = True",
           "    context.check_hostname = False", ("tests/test_tls.py::test_the_node_refuses_a_pacs_it_cannot_trust",)),
    Mutant("tls", "no verification of the PACS certificate", "node/network/tls.py",
           "    context.check_hostname = True\n    context.verify_mode = ssl.CERT_REQUIRED",
           "    context.check_hostname = False\n    context.verify_mode = ssl.CERT_NONE",
           ("tests/test_tls.py::test_the_node_refuses_a_pacs_it_cannot_trust",)),
    Mutant("tls", "TLS 1.0 allowed (and OpenSSL's security level lowered)", "node/network/tls.py",
           "    context.minimum_version = ssl.TLSVersion.TLSv1_2",
           '    context.minimum_version = ssl.TLSVersion.TLSv1\n    context.set_ciphers("DEFAULT:@SECLEVEL=0")',
           ("tests/test_tls.py::test_the_node_refuses_a_pacs_it_cannot_trust",
            "tests/test_tls.py::test_the_listener_refuses_expired_and_old_tls_clients")),
    Mutant("tls", "scanner certificates not verified", "node/network/tls.py",
           "        context.verify_mode = ssl.CERT_REQUIRED\n    elif", "        context.verify_mode = ssl.CERT_NONE\n    elif",
           ("tests/test_tls.py::test_the_listener_refuses_expired_and_old_tls_clients",)),
    # -- registry -------------------------------------------------------------------------------------------
    Mutant("registry", "pseudonym SHA-1, 12 hex digits", "node/registry/store.py",
           "return hmac.new(salt, patient_id.encode(), hashlib.sha256).hexdigest()[:16]",
           "return hmac.new(salt, patient_id.encode(), hashlib.sha1).hexdigest()[:12]",
           ("tests/test_promises.py::test_pseudonym_is_hmac_sha256_truncated_to_16_hex_digits",)),
    Mutant("registry", "one current report per study and producer", "node/registry/store.py",
           "                if not mine or not r[\"source_series\"] or mine & set(r[\"source_series\"].split())]",
           "                ]", ("tests/test_registry.py",)),
    Mutant("registry", "salt file readable by all", "node/registry/__init__.py",
           "os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)", "os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)",
           ("tests/test_registry.py",)),
    # -- scanner conventions -------------------------------------------------------------------------------
    Mutant("scanner", "gauss taken as tesla", "node/inputs/frames.py",
           "    return value / 10000.0 if value > GAUSS_THRESHOLD else value", "    return value",
           ("tests/test_vendor_files.py::test_ge_gauss_phase_and_inline_maps", "tests/test_scanner_kinds.py")),
    Mutant("scanner", "Philips private inversion times ignored", "node/inputs/timing.py",
           '    ("Philips Inversion Delay Time (2005,xx72)", philips_inversion_delay),\n', "",
           ("tests/test_vendor_files.py::test_philips_study_runs_with_the_built_in_routes",)),
    Mutant("scanner", "Image Type P not phase", "node/inputs/kinds.py",
           'lambda f: bool({_value(f, 2), _value(f, 3)} & {"P", "PHASE"})),', "lambda f: False),",
           ("tests/test_scanner_kinds.py",)),
    Mutant("scanner", "the contrast agent decides native vs post", "node/inputs/t1_maps.py",
           "    text = series[0].series_description\n",
           '    text = "post" if series[0].dataset.get("ContrastBolusAgent") else series[0].series_description\n',
           ("tests/test_scanner_kinds.py",)),
    Mutant("scanner", "two maps of one acquisition both used", "node/inputs/t1_maps.py",
           "    return bool(pairs) and all(", "    return False and all(",
           ("tests/test_vendor_files.py::test_philips_ecv_pairs_each_slice_with_its_native_map",)),
    # -- outputs --------------------------------------------------------------------------------------------
    Mutant("outputs", "source's private elements copied into derived images", "dicom_out/derived_mr.py",
           "        _copy_identity(ds, plane.header)\n",
           "        _copy_identity(ds, plane.header)\n        ds.update({e.tag: e for e in plane.header if e.tag.is_private})\n",
           ("tests/test_vendor_files.py::test_philips_outputs_stand_on_their_own",)),
    Mutant("outputs", "Series Description cut by characters", "dicom_out/descriptions.py",
           "        return len(encode_string(text, encodings))", "        return len(text)",
           ("tests/test_vendor_files.py::test_long_non_ascii_series_description_is_cut_by_bytes_keeping_the_suffix",)),
    Mutant("outputs", "a MOLLI T1 map's series number outside its block", "node/process/modules/output_series.py",
           '"molli.t1": OutputSeries(9300, 50,', '"molli.t1": OutputSeries(9300, 100,',
           ("tests/test_output_tables.py",)),
    Mutant("outputs", "ECV map unit stated as a ratio, not percent", "dicom_out/quantities.py",
           '"ECV", "Extracellular volume fraction (percent)", codes.UNIT_PERCENT',
           '"ECV", "Extracellular volume fraction (percent)", codes.UNIT_NONE', ("tests/test_output_tables.py",)),
    Mutant("outputs", "AHA segments run the wrong way round on a mirrored image", "node/process/modules/segments.py",
           "segment_labels(myocardium, septum, levels[i], anterior_to_septum(orientation))",
           "segment_labels(myocardium, septum, levels[i], 1)", ("tests/test_aha_segments.py", "tests/test_geometry.py",
                                                                  "tests/test_process_and_pm.py")),
    Mutant("outputs", "a clean report says nothing of its quality", "node/process/modules/quality.py",
           "or \\\n            [Evaluation(codes.QUALITY_FINDING, codes.NO_QUALITY_FINDING)]", "or \\\n            []",
           ("tests/test_quality_control.py",)),
    Mutant("outputs", "the summary shows segment medians as means", "node/process/modules/summary.py",
           'def _segments(report: ParsedReport, code, derivation: str | None = "Mean",',
           'def _segments(report: ParsedReport, code, derivation: str | None = "Median",',
           ("tests/test_study_summary.py",)),
    Mutant("outputs", "bullseye drawn clockwise", "dicom_out/study_summary.py", "start = 60.0 + 60.0 * k",
           "start = 60.0 - 60.0 * k", ("tests/test_study_summary.py",)),
    # -- per-segment values, T2, routing of the late parts ------------------------------------------------------
    Mutant("segments", "LGE segment extent leaves the MVO out", "node/process/modules/lge.py",
           "infarcted = np.stack([s.segmentation.infarct | s.segmentation.mvo for s in synthetic]) & mask",
           "infarcted = np.stack([s.segmentation.infarct for s in synthetic]) & mask",
           ("tests/test_lge_module.py::test_infarct_extent_per_aha_segment_is_the_phantoms",)),
    Mutant("segments", "a dDCE segment's interval fitted over every fitted voxel", "node/process/modules/ddce.py",
           "slice_estimates(results, mask, MIN_REGION_VOXELS, SEGMENT_INTERVALS)",
           "slice_estimates(results, fitted, MIN_REGION_VOXELS, SEGMENT_INTERVALS)",
           ("tests/test_ddce_module.py::test_aha_segments_carry_their_own_intervals_and_reach_the_summary",)),
    Mutant("segments", "the dDCE bullseye shows voxel means, identified or not", "node/process/modules/summary.py",
           '_segments(report, codes.VE_PLUS_VP, None, ", " + window)', '_segments(report, codes.VE_PLUS_VP, "Mean", ", " + window)',
           ("tests/test_ddce_module.py::test_aha_segments_carry_their_own_intervals_and_reach_the_summary",)),
    Mutant("segments", "a received RV ignored by the ECV segments", "node/process/modules/ecv.py",
           "[s.pixel_mm for s in post], drawn_rv)", "[s.pixel_mm for s in post], None)",
           ("tests/test_process_and_pm.py::test_a_received_seg_gives_the_myocardium_and_the_rv_that_marks_the_septum",)),
    Mutant("segments", "the T2 wall keeps its blood-touching edge", "node/process/modules/t2segments.py",
           "    return core if core.sum() >= 0.5 * mask.sum() else mask", "    return mask",
           ("tests/test_t2_segments.py",)),
    Mutant("segments", "resampling swaps rows and columns", "analysis/geometry.py",
           "    where = patient_mm_to_pixels(points, *source).T", "    where = patient_mm_to_pixels(points, *source).T[::-1]",
           ("tests/test_t2_segments.py",)),
    Mutant("segments", "a route's requires met by one of its kinds", "node/route/router.py",
           "        if not instances or not set(route.requires) <= present:",
           "        if not instances or (route.requires and not set(route.requires) & present):",
           ("tests/test_t2_segments.py",)),
    Mutant("segments", "no final run of a waiting study-so-far route", "node/route/router.py",
           '        for route in (r for r in self.config.routes if r.scope == "study-so-far"):',
           "        for route in ():", ("tests/test_ddce_module.py::test_too_early_gives_no_window_and_no_error",)),
    Mutant("segments", "a wall drawn on a registered post-contrast map left where it was drawn",
           "node/process/modules/ecv.py", "is not None and np.any(applied_px):", "is not None and False:",
           ("tests/test_quality_control.py::test_a_wall_drawn_on_the_moved_post_contrast_map_moves_with_it",)),
    Mutant("segments", "a received mask of another matrix used as it is", "node/inputs/roi.py",
           "        if mask.shape != _shape(image):", "        if False:",
           ("tests/test_process_and_pm.py::test_a_seg_on_another_matrix_is_not_used_and_the_study_still_runs",)),
    Mutant("segments", "the same plane measured along each image's own normal", "analysis/geometry.py",
           "abs(float(np.dot(n, np.asarray(position_b, float) - np.asarray(position_a, float)))) <= POSITION_TOLERANCE_MM",
           "same_slice(float(np.dot(n, position_a)), float(np.dot(normal(orientation_b), position_b)))",
           ("tests/test_geometry.py",)),
    Mutant("segments", "masks of an enhanced map keyed by instance, not frame", "node/inputs/roi.py",
           '    return image.sop_instance_uid if image.number is None else f"{image.sop_instance_uid}/{image.number}"',
           "    return image.sop_instance_uid",
           ("tests/test_vendor_files.py::test_a_seg_on_one_frame_of_an_enhanced_map_draws_that_slice_only",)),
    Mutant("segments", "an output series without its date", "node/process/jobs.py",
           "        with_series_date(ds).save_as(path, enforce_file_format=True)",
           "        ds.save_as(path, enforce_file_format=True)",
           ("tests/test_process_and_pm.py::test_process_writes_map_and_results",)),
    # -- failures and settings ----------------------------------------------------------------------------------
    Mutant("failures", "an analysis error counted as internal", "node/errors.py",
           "return isinstance(exc, (InputError, AnalysisError))", "return isinstance(exc, InputError)",
           ("tests/test_errors.py",)),
    Mutant("failures", "a failed job leaves no results.json", "node/process/jobs.py",
           "        write_failure(final, failure)\n", "", ("tests/test_errors.py",)),
    Mutant("settings", "per-study values skip the configuration's checks", "node/settings.py",
           "    if check is not None and (problem := check(value)) is not None:\n        raise ValueError",
           "    if False and (problem := check(value)) is not None:\n        raise ValueError",
           ("tests/test_settings.py",)),
    Mutant("settings", "a default path not relative to the configuration file", "node/config.py",
           "            values[f.name] = _resolve(f.default, base_dir)", "            pass",
           ("tests/test_settings.py",)),
    # -- physics --------------------------------------------------------------------------------------------
    Mutant("physics", "myocardium without the post-contrast contrast", "analysis/myocardium.py",
           "    contrast_image = _contrast(t1_native_ms, t1_post_ms, blood_pool)", "    contrast_image = None",
           ("tests/test_analysis_myocardium.py",)),
    Mutant("physics", "the ECV post-contrast map never registered", "node/process/modules/ecv.py",
           "MIN_SHIFT_PX = 0.5 ", "MIN_SHIFT_PX = 99.0 ", ("tests/test_quality_control.py",)),
    Mutant("physics", "Lu 2012 c1 247.4 -> 200", "analysis/oximetry.py", "c=247.4,", "c=200.0,",
           ("tests/test_promises.py",)),
    Mutant("physics", "gadobutrol r1 5.2 -> 4.5 at 1.5 T", "analysis/relaxivity.py",
           '"gadobutrol": (r"gadobutrol|gadovist|gadavist", 5.2, 5.0)', '"gadobutrol": (r"gadobutrol|gadovist|gadavist", 4.5, 5.0)',
           ("tests/test_promises.py",)),
    Mutant("physics", "20.1 J/mL O2 -> 21", "analysis/oximetry.py", "J_PER_ML_O2 = 20.1", "J_PER_ML_O2 = 21.0",
           ("tests/test_promises.py", "tests/test_analysis_relaxometry.py")),
    Mutant("physics", "no (1 - Hct) in ECV", "analysis/ecv.py", "(1.0 - hematocrit) * d_r1 / d_r1_blood",
           "d_r1 / d_r1_blood", ("tests/test_analysis_ecv.py",)),
    Mutant("physics", "Look-Locker correction always", "analysis/relaxometry.py",
           "        t1 = t1_star * (b / a - 1.0) if look_locker else t1_star", "        t1 = t1_star * (b / a - 1.0)",
           ("tests/test_analysis_relaxometry.py",)),
    Mutant("physics", "polarity only around the minimum", "analysis/relaxometry.py",
           "        better = cost < best_cost",
           "        cost = np.where(np.abs(k - np.argmin(y, axis=1)) <= 1, cost, np.inf)\n        better = cost < best_cost",
           ("tests/test_analysis_relaxometry.py",)),
    Mutant("physics", "ShMOLLI always uses 7 samples", "analysis/relaxometry.py",
           '    chosen["failed"] = chosen["failed"] | (use == 0)',
           '    use = np.full_like(use, 7)\n    chosen = {name: getattr(fits[7], name) for name in chosen}\n'
           '    chosen["failed"] = chosen["failed"] | (use == 0)', ("tests/test_analysis_relaxometry.py",)),
    Mutant("physics", "95 % interval threshold 0.5 instead of 3.84", "analysis/ddce_uncertainty.py",
           "CHI2_95_ONE_DOF = 3.841", "CHI2_95_ONE_DOF = 0.5", ("tests/test_ddce_intervals.py",)),
    Mutant("physics", "an interval open at a limit still counts as identified", "analysis/ddce_uncertainty.py",
           "        identified = low is not None and high is not None", "        identified = True",
           ("tests/test_ddce_intervals.py",)),
    Mutant("physics", "per voxel, the AIF before the first map can only grow", "analysis/ddce_identification.py",
           "    low_bolus = -float(np.trapezoid(aif(early), early))", "    low_bolus = 0.0",
           ("tests/test_ddce_intervals.py",)),
    Mutant("physics", "a map identified in no voxel is still sent as a measurement", "node/process/modules/ddce_regions.py",
           "        return name not in self.maps or self.fraction(name) >= MIN_IDENTIFIED_FRACTION",
           "        return True", ("tests/test_ddce_module.py",)),
    Mutant("physics", "the first-pass AIF keeps the blood pool's edge voxels", "analysis/perfusion.py",
           "    return core if core.sum() >= MIN_AIF_VOXELS else blood_pool", "    return blood_pool",
           ("tests/test_ddce_joint.py",)),
    Mutant("physics", "flow-limited PS reported as identified", "analysis/ddce_uncertainty.py",
           "FLOW_LIMITED_RATIO = 3.0", "FLOW_LIMITED_RATIO = 300.0", ("tests/test_ddce_joint.py",)),
    Mutant("physics", "the module ignores the proton-density frames", "node/process/modules/ddce_first_pass.py",
           "                                    pd_frames=pd, flip_deg", "                                    pd_frames=None, flip_deg",
           ("tests/test_ddce_first_pass.py",)),
    Mutant("physics", "lesion regions keep their mixed edge voxels", "node/process/modules/ddce_lesions.py",
           "    return (core, True) if core.sum() >= MIN_REGION_VOXELS or not mask.any() else (mask, False)",
           "    return (mask, False)",
           ("tests/test_ddce_module.py",)),
    Mutant("physics", "the fits' Jacobian takes c1 for c2", "analysis/tcxm.py",
           "    d_b = c2 * (e_b_step - e_b) / (b * RATE_STEP)", "    d_b = c1 * (e_b_step - e_b) / (b * RATE_STEP)",
           ("tests/test_ddce_joint.py",)),
    Mutant("physics", "rounding to the millimetre decides the same slice", "analysis/geometry.py",
           "    return abs(a_mm - b_mm) <= POSITION_TOLERANCE_MM", "    return round(a_mm) == round(b_mm)",
           ("tests/test_geometry.py",)),
    # -- backfill and the cluster executor (issue 17) -------------------------------------------------------------
    Mutant("backfill", "a study being retrieved completes by quiet time", "node/store/index.py",
           "AND b.state IN ('found', 'failed'))", "AND b.state IN ('failed'))", ("tests/test_store_index.py",)),
    Mutant("backfill", "a retrieved study still waits the quiet times", "node/store/index.py",
           '(last_received_at <= ? OR EXISTS (SELECT 1 "', '(last_received_at <= ? OR 0 AND EXISTS (SELECT 1 "',
           ("tests/test_store_index.py",)),
    Mutant("backfill", "a study counts as finished with outputs still to send", "node/store/index.py",
           "outbox o WHERE o.study_uid = s.study_uid AND o.state = 'pending')",
           "outbox o WHERE o.study_uid = s.study_uid AND o.state = 'never')", ("tests/test_store_index.py",)),
    Mutant("backfill", "a complete study whose job failed is never routed again", "node/route/router.py",
           "for study_uid in self.index.unsettled_studies():", "for study_uid in []:",
           ("tests/test_backfill_resilience.py",)),
    Mutant("backfill", "a stopped run forgets the studies it never began", "node/backfill/driver.py",
           'counts["left"] = len(todo) - counts["done"] - counts["failed"]', 'counts["left"] = len(waiting)',
           ("tests/test_backfill_resilience.py",)),
    Mutant("backfill", "QIDO-RS paging ends at the first short page", "node/backfill/archive.py",
           "            if not page:", "            if len(page) < QIDO_PAGE:", ("tests/test_backfill_resilience.py",)),
    Mutant("backfill", "the multipart delimiter without its CRLF", "node/backfill/archive.py",
           'delimiter = b"\\r\\n--" + boundary.encode()', 'delimiter = b"--" + boundary.encode()',
           ("tests/test_backfill_plan.py", "tests/test_backfill_resilience.py")),
    Mutant("backfill", "a WADO-RS storage error stops the whole run", "node/backfill/driver.py",
           "        except (OSError, sqlite3.Error) as exc:\n            raise ArchiveError(f\"could not store",
           "        except ZeroDivisionError as exc:\n            raise ArchiveError(f\"could not store",
           ("tests/test_backfill_resilience.py",)),
    Mutant("backfill", "a cancelled Dask task fails its job", "node/process/jobs.py",
           "elif isinstance(exc, (ConnectionError, TimeoutError)) or", "elif isinstance(exc, (TimeoutError,)) or",
           ("tests/test_backfill_resilience.py",)),
)


def _copy(destination: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "demo-output", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, destination, ignore=ignore, dirs_exist_ok=True)


def run(mutant: Mutant, copy: Path) -> dict:
    target = copy / mutant.path
    original = target.read_text()
    if original.count(mutant.old) != 1:
        return {"area": mutant.area, "what": mutant.what, "caught": None,
                "note": f"the line to break is not in {mutant.path} exactly once: update the mutant"}
    target.write_text(original.replace(mutant.old, mutant.new))
    started = time.time()
    try:
        env = dict(os.environ, PYTHONPATH=str(copy), PATH=os.environ.get("PATH", "") + ":/usr/sbin")
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
                                cwd=copy, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        target.write_text(original)
    last = (result.stdout.strip().splitlines() or [""])[-1]
    return {"area": mutant.area, "what": mutant.what, "caught": result.returncode != 0, "tests": list(mutant.tests),
            "result": last, "seconds": round(time.time() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the mutants of this area only")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.only in (None, m.area)]
    results = []
    with tempfile.TemporaryDirectory(prefix="cmr-node-mutants-") as work:
        copy = Path(work) / "repo"
        _copy(copy)
        # control: the copy, unbroken, passes the quick tests (else every mutant would look caught)
        control = run(Mutant("control", "no change", "node/store/layout.py", "import os\n", "import os\n",
                             ("tests/test_store_index.py", "tests/test_analysis_relaxometry.py", "tests/test_promises.py")),
                      copy)
        if control["caught"] is not False:
            print(f"the unbroken copy fails its tests: {control}")
            return 2
        for mutant in mutants:
            outcome = run(mutant, copy)
            results.append(outcome)
            mark = {True: "caught", False: "SURVIVED", None: "STALE"}[outcome["caught"]]
            print(f"{mark:8} {mutant.area:9} {mutant.what}  ({outcome.get('result', outcome.get('note'))})",
                  flush=True)
    areas = {}
    for r in results:
        caught, total = areas.get(r["area"], (0, 0))
        areas[r["area"]] = (caught + bool(r["caught"]), total + 1)
    print("\n| area | mutants | caught |\n|---|---|---|")
    for area, (caught, total) in areas.items():
        print(f"| {area} | {total} | {caught} |")
    print(f"| all | {len(results)} | {sum(bool(r['caught']) for r in results)} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["caught"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

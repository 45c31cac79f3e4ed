import time

import pytest

from node.config import parse_config
from node.dispatch.dispatcher import next_attempt_delay
from node.errors import Failure, FailureKind, Step
from node.store.index import Index, InstanceRecord
from node.route.router import Router
from node.store.layout import Layout, is_valid_uid, write_atomic


def record(sop, series="1.2.3.4", study="1.2.3", description="MOLLI_pre_MOCO_T1", directory=None):
    """An index record; with directory, of a real T1 map file written there (routing reads its headers)."""
    path = f"/x/{sop}.dcm"
    if directory is not None:
        from datetime import datetime
        import numpy as np
        from dicom_out.synthetic_mr import SyntheticStudy, t1_map_series
        minutes = {"MOLLI_pre_MOCO_T1": 0, "MOLLI_post_MOCO_T1": 20}.get(description, 30)
        [ds] = t1_map_series(np.full((8, 8), 1000.0), SyntheticStudy(study_uid=study), series_description=description,
                             series_number=1, acquired=datetime(2026, 1, 1, 10, minutes), pixel_mm=1.5)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, sop
        path = str(directory / f"{sop}.dcm")
        ds.save_as(path, enforce_file_format=True)
    return InstanceRecord(sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.4", study_uid=study,
                          series_uid=series, series_description=description, modality="MR",
                          path=path, size=10, transfer_syntax="1.2.840.10008.1.2.1",
                          acquisition_datetime=None, calling_ae="SCANNER")


@pytest.mark.parametrize("uid, ok", [("1.2.3", True), ("1.2.3.", False), ("../etc", False), ("1/2", False),
                                     ("1.2\x003", False), ("", False), ("1." * 40, False), (None, False)])
def test_uid_validation(uid, ok):
    assert is_valid_uid(uid) is ok


def test_instance_path_refuses_path_characters(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(ValueError):
        layout.instance_path("1.2", "../../etc", "1.3")


def test_write_atomic_leaves_no_partial_file(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    target = layout.incoming / "1.2" / "1.3" / "1.4.dcm"
    write_atomic(target, b"DICM" * 10, layout.tmp)
    assert target.read_bytes() == b"DICM" * 10
    (layout.incoming / "1.9").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        write_atomic(layout.incoming / "1.9" / "1.3" / "1.4.dcm", b"x", layout.tmp)
    assert list(layout.tmp.iterdir()) == []


def test_data_dir_is_private(tmp_path):
    layout = Layout(tmp_path / "data")
    layout.create()
    assert (layout.root.stat().st_mode & 0o777) == 0o700


def test_resent_instance_is_idempotent(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    index.record_instance(record("1.1"))
    index.record_instance(record("1.1"))
    assert index.status()["instances"] == 1


def test_series_and_study_completion_follow_quiet_times(tmp_path):
    index = Index(":memory:")
    config = parse_config({"completion": {"series_quiet_seconds": 10, "study_quiet_seconds": 30},
                           "routes": [{"name": "ecv", "series_description": "MOCO_T1", "module": "ecv"}]})
    router = Router(config, index)
    t0 = 1000.0
    index.record_instance(record("1.1", directory=tmp_path), now=t0)
    index.record_instance(record("2.1", series="1.2.3.5", description="MOLLI_post_MOCO_T1", directory=tmp_path),
                          now=t0 + 5)
    assert router.sweep(now=t0 + 9) == []                    # nothing quiet yet
    assert router.sweep(now=t0 + 12) == []                   # first series complete; study not quiet
    jobs = router.sweep(now=t0 + 40)                          # all quiet: the study route runs once
    assert len(jobs) == 1
    assert router.sweep(now=t0 + 100) == []
    assert set(index.jobs()[0].inputs["series"]) == {"1.2.3.4", "1.2.3.5"}
    first = index.claim_jobs(1)[0]
    index.finish_job(first.id, "/out", [], [], first.study_uid)
    # another map arrives: the study reopens and a new job (re-run) is queued for the larger input
    index.record_instance(record("3.1", series="1.2.3.6", description="MOLLI_post2_MOCO_T1", directory=tmp_path),
                          now=t0 + 200)
    assert len(router.sweep(now=t0 + 300)) == 1
    # the same instances sent again: completion again, but no duplicate job
    index.record_instance(record("3.1", series="1.2.3.6", description="MOLLI_post2_MOCO_T1", directory=tmp_path),
                          now=t0 + 400)
    assert router.sweep(now=t0 + 500) == []
    assert len(index.jobs()) == 2


def test_interrupted_jobs_are_requeued(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    job_id = index.add_job("ecv", "ecv", "1.2.3", "key", {"files": []})
    assert index.add_job("ecv", "ecv", "1.2.3", "key", {"files": []}) is None
    assert [j.id for j in index.claim_jobs(5)] == [job_id]
    index.close()
    index = Index(tmp_path / "i.sqlite")
    assert index.requeue_interrupted_jobs() == 1
    job = index.claim_jobs(5)[0]
    assert job.id == job_id and job.attempts == 2


def test_backoff_doubles_and_is_capped():
    settings = parse_config({"dispatch": {"retry_base_seconds": 5, "retry_max_seconds": 60}}).dispatch
    assert [next_attempt_delay(settings, n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


def test_outbox_retry_and_dead_letters(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    job_id = index.add_job("ecv", "ecv", "1.2.3", "key", {"files": []})
    index.claim_jobs(1)
    index.finish_job(job_id, "/out", [{"path": "/out/a.dcm", "sop_instance_uid": "9.9",
                                       "sop_class_uid": "1.2"}], ["pacs", "archive"], "1.2.3")
    due = index.due_outbox(time.time())
    assert set(due) == {"pacs", "archive"}
    item = due["pacs"][0]
    index.mark_failed_attempt(item.id, "down", time.time() + 100, dead=True)
    assert index.status()["outbox"]["pacs"] == {"dead": 1}
    assert index.retry_dead("pacs") == 1
    assert index.status()["outbox"]["pacs"] == {"pending": 1}


def test_an_item_waiting_for_retry_holds_back_its_study_only(tmp_path):
    index = Index(tmp_path / "i.sqlite")
    for study in ("1.2.1", "1.2.2"):
        job_id = index.add_job("ecv", "ecv", study, study, {"files": []})
        index.claim_jobs(1)
        outputs = [{"path": f"/out/{n}.dcm", "sop_instance_uid": f"{study}.{n}", "sop_class_uid": "1.2"}
                   for n in (1, 2, 3)]
        index.finish_job(job_id, "/out", outputs, ["pacs"], study)
    first = index.due_outbox(time.time())["pacs"]
    assert [i.sop_instance_uid for i in first] == ["1.2.1.1", "1.2.1.2", "1.2.1.3", "1.2.2.1", "1.2.2.2", "1.2.2.3"]
    index.mark_sent(first[0].id)
    index.mark_failed_attempt(first[1].id, "status 0xA700", time.time() + 100, dead=False)
    # 1.2.1.3 waits behind 1.2.1.2; the other study goes on
    assert [i.sop_instance_uid for i in index.due_outbox(time.time())["pacs"]] == ["1.2.2.1", "1.2.2.2", "1.2.2.3"]
    assert [i.sop_instance_uid for i in index.due_outbox(time.time() + 200)["pacs"]][:2] == ["1.2.1.2", "1.2.1.3"]
    # a dead letter is given up on and no longer holds the study back
    index.mark_failed_attempt(first[1].id, "status 0xA700", time.time() + 100, dead=True)
    assert "1.2.1.3" in [i.sop_instance_uid for i in index.due_outbox(time.time())["pacs"]]


def test_study_waits_for_its_running_jobs():
    index = Index(":memory:")
    index.record_instance(record("1.1"), now=0.0)
    job = index.add_job("molli", "molli", "1.2.3", "k", {"files": []})
    assert index.complete_quiet_series(1, now=100.0)
    assert index.complete_quiet_studies(1, now=100.0) == []        # the job may bring a T1 map back in
    index.claim_jobs(1)
    index.fail_job(job, Failure(FailureKind.INPUT, Step.READ, "done with it"))
    assert index.complete_quiet_studies(1, now=100.0) == ["1.2.3"]


def test_index_from_an_earlier_version_is_brought_up_to_date(tmp_path):
    """An index written before series.image_type existed: the upgraded node still stores instances."""
    import sqlite3
    old = sqlite3.connect(tmp_path / "i.sqlite")
    old.executescript("CREATE TABLE series (series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, "
                      "series_description TEXT NOT NULL DEFAULT '', modality TEXT, first_received_at REAL NOT NULL, "
                      "last_received_at REAL NOT NULL, completed_at REAL); PRAGMA user_version=1;")
    old.execute("INSERT INTO series VALUES ('1.2.3.9', '1.2.3', 'old', 'MR', 1, 1, NULL)")
    old.commit()
    old.close()
    index = Index(tmp_path / "i.sqlite")
    index.record_instance(record("1.1"))
    assert index.status()["instances"] == 1
    assert {r["series_uid"]: r["image_type"] for r in index.series_of_study("1.2.3")} == {"1.2.3.9": "", "1.2.3.4": ""}


def test_an_instance_row_that_cannot_be_committed_raises_in_its_own_thread(tmp_path):
    """Group commit: a failed commit must reach each caller whose row it carried (the receiver then answers
    Out of Resources), never pass as done."""
    import sqlite3
    from node.store.index import Index, InstanceRecord
    index = Index(tmp_path / "index.sqlite")
    broken = InstanceRecord("1.2.3.4", None, "1.2.3", "1.2.3.1", "", "MR", "/x.dcm", 10, "1.2.840.10008.1.2.1",
                            None, None)         # sop_class_uid is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        index.record_instance(broken)
    assert index.status()["instances"] == 0


def test_a_study_being_retrieved_waits_and_a_retrieved_one_completes_without_quiet_time():
    index = Index(":memory:")
    index.backfill_found("1.2.3", "archive", "20260101", ["1.2.3.4", "1.2.3.5"])
    index.record_instance(record("1.1"), now=1000.0)
    # quiet for an hour, but its retrieve has not ended: no module may see half of it
    assert index.complete_quiet_series(10, now=4600.0) == []
    assert index.complete_quiet_studies(30, now=4600.0) == []
    index.record_instance(record("2.1", series="1.2.3.5"), now=4600.0)
    index.backfill_retrieved("1.2.3")
    # the retrieve has ended: complete at the moment of its last instance, no quiet time waited for
    assert {r["series_uid"] for r in index.complete_quiet_series(10, now=4600.0)} == {"1.2.3.4", "1.2.3.5"}
    assert index.complete_quiet_studies(30, now=4600.0) == ["1.2.3"]
    # finished: settled by its routing pass, no job queued or running, nothing left to send
    job = index.add_job("ecv", "ecv", "1.2.3", "k", {"files": []})
    index.mark_settled("1.2.3")
    assert not index.study_finished("1.2.3")
    index.claim_jobs(1)
    index.finish_job(job, "/out", [{"path": "/out/a.dcm", "sop_instance_uid": "9.9", "sop_class_uid": "1.2"}],
                     ["pacs"], "1.2.3")
    assert not index.study_finished("1.2.3")                 # its output not yet sent
    index.mark_sent(index.outbox_rows()[0]["id"])
    assert index.study_finished("1.2.3")
    # more arrives later (a scanner sends to the same study): unsettled, and the quiet times hold again
    later = time.time() + 5
    index.record_instance(record("3.1", series="1.2.3.6"), now=later)
    assert not index.study_finished("1.2.3")
    assert index.complete_quiet_series(10, now=later + 1) == []

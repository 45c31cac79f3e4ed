"""On-disk layout of the node and atomic writes.

data_dir/
  incoming/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   received instances, as received
  quarantine/<time>-<id>.dcm + .txt                        rejected input and the reason
  results/<job id>/                                        outputs of one job (+ results.json)
  tmp/                                                     partial writes (never read)
  index.sqlite                                             the index, jobs and outbox
Only UIDs appear in paths: no patient data in file names.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

from node.store.group_commit import GroupFlush

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: object) -> bool:
    """A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters; safe as a file name."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


class Layout:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir)
        self.incoming = self.root / "incoming"
        self.quarantine = self.root / "quarantine"
        self.results = self.root / "results"
        self.tmp = self.root / "tmp"
        self.index_path = self.root / "index.sqlite"

    def create(self) -> None:
        for d in (self.incoming, self.quarantine, self.results, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        # data_dir holds patient data: only the node's own user may read it.
        os.chmod(self.root, 0o700)

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_uid):
            if not is_valid_uid(uid):
                raise ValueError(f"not a valid UID for a path: {uid!r}")
        return self.incoming / study_uid / series_uid / f"{sop_uid}.dcm"


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Concurrent writers into one directory (several scanners, one series) share its flush.
_directory_flushes = GroupFlush()


def stage(data: bytes, tmp_dir: Path) -> Path:
    """data in a new file under tmp_dir, flushed to disk (not yet visible anywhere else)."""
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with memoryview(data) as view:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


# (path, inode) of directories whose own entry this process knows to be flushed in their parent
_durable_directories: set[tuple[str, int]] = set()
_REMEMBERED_DIRECTORIES = 100_000


def _flush_entry_of(directory: Path) -> None:
    """Flush directory's parent, unless this process knows directory's entry there is on disk already.

    Not only the thread that created a directory must wait for that flush: another thread (or process) writing
    into it at the same time would otherwise answer Success while its new series or study folder could still
    vanish in a power cut."""
    key = (str(directory), os.stat(directory).st_ino)
    if key in _durable_directories:
        return
    _directory_flushes.flush(str(directory.parent), _fsync_dir)
    if len(_durable_directories) > _REMEMBERED_DIRECTORIES:
        _durable_directories.clear()        # forgetting only costs a flush more
    _durable_directories.add(key)


def place(staged: Path, target: Path) -> None:
    """Move a staged file to target and flush the directories that changed: target is then absent/old or
    complete, after a crash or power loss too. Directories two levels up (series and study folders) may be new."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    _directory_flushes.flush(str(target.parent), _fsync_dir)
    for directory in (target.parent, target.parent.parent):
        _flush_entry_of(directory)


def write_atomic(target: Path, data: bytes, tmp_dir: Path) -> None:
    """Write data so that target is either absent/old or complete: tmp file, fsync, rename, fsync dir."""
    place(stage(data, tmp_dir), target)


def quarantine(layout: Layout, data: bytes, reason: str) -> Path:
    """Keep rejected input for a person to inspect, with the reason beside it."""
    stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    target = layout.quarantine / f"{stem}.dcm"
    write_atomic(target, data, layout.tmp)
    (layout.quarantine / f"{stem}.txt").write_text(reason + "\n")
    return target

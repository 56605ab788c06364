"""Atomic file output: a reader sees the old file or the new one, never half of one."""

import os
import tempfile


def write_atomic(path, data) -> None:
    """Writes `data` (bytes or str) to `path` through a temporary file in the same folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, _existing_mode(path) or 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _existing_mode(path):
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None


def ensure_dir(path) -> str:
    """Creates `path` (and parents); a clear error when a file stands in the way."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(
            f"output directory {path!r} exists and is not a directory; choose another path"
        )
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Several files at once: all of them or none.


def _write_file(path, payload, mode):
    """Writes `payload` to a new file `path` with `mode`, flushed to the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.chmod(path, mode)
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder; the renames still happened
        pass
    finally:
        os.close(fd)


def write_files_atomic(directory, files) -> dict:
    """Writes every {file name: bytes or str} of `files` into `directory`, all or none.

    Each file is written and fsynced in a temporary folder inside `directory` (the same
    filesystem), and only when all of them are on the disk are they moved into place with
    os.replace, which needs no free space. On any failure (a full disk, a folder where a file
    should go, ...) `directory` is left exactly as it was: the old files intact, no temporary
    files. `directory` is created if needed. Names must be plain file names. Returns
    {file name: path}.
    """
    directory = os.fspath(directory)
    payloads = {}
    for name, data in files.items():
        if not isinstance(name, str) or not name or name in (".", "..") \
                or os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(f"file names must be plain names without folders. Received: "
                             f"{name!r}")
        payloads[name] = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    paths = {name: os.path.join(directory, name) for name in payloads}
    for name, path in paths.items():
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(f"cannot write {path!r}: a folder of that name is in the "
                                    "way; move it or choose another output folder")
    created = not os.path.exists(directory)
    ensure_dir(directory)
    staging = tempfile.mkdtemp(prefix=".tfedge-", suffix=".tmp", dir=directory)
    new = {name: os.path.join(staging, f"new-{i}") for i, name in enumerate(payloads)}
    old = {}  # name -> a hard link (or copy) of the file it replaces
    done = []
    try:
        for name, payload in payloads.items():
            _write_file(new[name], payload, _existing_mode(paths[name]) or 0o666 & ~_umask())
        for i, name in enumerate(payloads):
            if os.path.lexists(paths[name]):
                backup = os.path.join(staging, f"old-{i}")
                try:
                    os.link(paths[name], backup, follow_symlinks=False)
                except OSError:  # no hard links here: a copy keeps the old bytes instead
                    import shutil

                    shutil.copy2(paths[name], backup, follow_symlinks=False)
                old[name] = backup
        for name in payloads:
            os.replace(new[name], paths[name])
            done.append(name)
    except BaseException:
        for name in reversed(done):  # put back what was already moved into place
            try:
                if name in old:
                    os.replace(old[name], paths[name])
                else:
                    os.unlink(paths[name])
            except OSError:
                pass
        _remove_tree(staging)
        if created:
            try:
                os.rmdir(directory)
            except OSError:
                pass
        raise
    _remove_tree(staging)
    _fsync_dir(directory)
    return paths


def _remove_tree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# One run per output folder.

LOCK_FILE = ".tfedge.lock"


class FolderLockedError(RuntimeError):
    """Another process holds the lock of an output folder: `path` (the folder), `pid` (the
    holder's process id, or None when it could not be read) and `lock_file`."""

    def __init__(self, path, pid, lock_file):
        self.path, self.pid, self.lock_file = path, pid, lock_file
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"output folder {path!r} is in use by {holder} (it holds "
                         f"{lock_file!r}); wait for that run to end, or write to another "
                         "folder")


class FolderLock:
    """An exclusive lock on an output folder, held from `__enter__` to `__exit__`:

        with _io.FolderLock("out"):       # FolderLockedError at once if another run holds it
            ...                           # write into out/

    It is an fcntl.flock on `<folder>/.tfedge.lock`, which holds the owner's PID. The kernel
    drops the lock when its process ends, however it ends, so a lock file left by a killed run
    blocks nothing. The lock file is removed on release, and so is the folder when this lock
    created it and it is empty again (a run that failed before writing leaves nothing behind).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.lock_file = os.path.join(self.path, LOCK_FILE)
        self._fd = None
        self._created = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self):
        import fcntl

        self._created = not os.path.exists(self.path)
        ensure_dir(self.path)
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise FolderLockedError(self.path, pid, self.lock_file) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file between our open and our flock:
            # then we hold a lock on a file nobody else will open. Start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_file))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is None:
            return
        try:
            os.unlink(self.lock_file)  # while still holding it: no one can be waiting on it
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        if self._created:
            try:
                os.rmdir(self.path)  # only succeeds when the folder is empty
            except OSError:
                pass


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

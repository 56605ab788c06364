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

"""Tell whether a folder can be created, creating nothing.

Start-up checks name every setting that cannot work before anything is
created: a start refused leaves the file system as it was.
"""
import errno
import os
from pathlib import Path


def folder_problem(folder: Path, *, writable: bool) -> str | None:
    """Return why ``folder`` (and its missing parents) cannot be created, or None.

    The reason is the system's, as creating it would give it (``Not a
    directory`` when a parent is a file). ``writable``: files are to be
    created in it, so a folder that exists must let them be. Creating may
    still fail for a reason no check sees beforehand (a full disk).
    """
    existing = next(path for path in (folder, *folder.parents) if os.path.exists(path))
    if existing == folder:
        if not folder.is_dir():
            return os.strerror(errno.EEXIST)
        if not writable:
            return None
    elif not existing.is_dir():
        return os.strerror(errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None

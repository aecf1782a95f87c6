"""Errors a user can fix. train.py prints them as one paragraph, without a traceback."""
import difflib
import errno


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class WeightsError(UserError):
    pass


class StorageError(UserError):
    """A file or folder could not be written (permissions, disk full, read-only mount)."""


def storage_error(path, err, what="write"):
    """One paragraph for an OSError on ``path``: what failed and what to do about it."""
    reason = err.strerror or str(err)
    hint = {"EACCES": "check the folder's permissions or choose another folder",
            "EPERM": "check the folder's permissions or choose another folder",
            "EROFS": "the file system is read-only: choose a writable folder",
            "ENOSPC": "the disk is full: free some space or choose another disk",
            "EDQUOT": "the disk quota is exhausted: free some space or choose another disk"}
    code = errno.errorcode.get(err.errno, "")
    return StorageError(f"Cannot {what} {path}: {reason}. "
                        f"{hint.get(code, 'check that the folder exists and is writable').capitalize()}.")


def user_message(err):
    """The message to show for a UserError. An error raised in a DataLoader worker reaches the
    main process wrapped in the worker's traceback; show the original paragraph instead, so
    the message is the same with any number of workers."""
    msg = str(err)
    if msg.startswith("Caught ") and "Original Traceback" in msg:
        last = msg.rstrip().splitlines()[-1]
        prefix = f"{type(err).__module__}.{type(err).__name__}: "
        for p in (prefix, f"{type(err).__name__}: "):
            if last.startswith(p):
                return last[len(p):]
    return msg


def closest(name, choices, n=1):
    """The valid choices that look most like ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)

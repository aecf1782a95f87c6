"""Errors a user can fix. train.py prints them as one paragraph, without a traceback."""
import difflib


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class WeightsError(UserError):
    pass


def closest(name, choices, n=1):
    """The valid choices that look most like ``name`` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)

"""The error every user mistake raises: ``main.py`` prints its message alone and exits with 2."""


class UserError(Exception):
    """Bad input (a config value, a file, a workdir): the message names it and says what to do.

    ``main.py`` prints such errors as one line without a traceback and exits with status 2;
    anything else is a bug and keeps its traceback.
    """

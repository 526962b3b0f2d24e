"""One error base for the project's own failures.

A ``TicketsError`` carries a message meant for the person who runs the system: the command line
prints it in one line and exits 2, the service turns the input kinds into a 4xx. Anything else
that escapes is a bug and keeps its traceback. Import this module freely: it imports nothing.
"""

from __future__ import annotations


class TicketsError(Exception):
    """A failure the user or operator can act on; the message says what and where."""


class DataError(TicketsError):
    """A training or test table is unusable: the message names the file, the rows, the problem."""


class InputError(TicketsError):
    """An argument or request value is malformed (a window, a scenario, a webhook header)."""


class ConfigurationError(TicketsError):
    """The settings or the installation cannot do what was asked (no data path, a package
    missing, a secret too weak)."""


class StoreError(TicketsError):
    """The artifact store could not be read or written."""


class TransientStoreError(StoreError):
    """The store did not answer in time, refused the connection, throttled or failed (5xx):
    trying again later may work."""


class TooLargeError(StoreError):
    """An object larger than the caller accepts; refused before it is read."""


class BundleError(TicketsError):
    """A model bundle or the champion pointer is missing, altered, or not what it claims."""


class TrainingError(TicketsError):
    """Training could not produce a model (no family completed a trial)."""


class PromotionError(TicketsError):
    """A promotion was refused because the current champion cannot be read: comparing against
    nothing would let any challenger win. The challenger stays registered, unpromoted."""


class LogUnavailableError(TicketsError):
    """The prediction log cannot take or give rows right now (a restart, a lost connection, a
    lock held too long): the service answers 503 with Retry-After, a caller may retry."""

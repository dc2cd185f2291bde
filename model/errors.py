"""The project's user errors and how a command-line entry point reports them.

Every error a user can act on (a bad config value, a missing or malformed data file, a checkpoint
that does not fit, a non-finite loss, a full disk, ...) is a :class:`UserError`. Each subclass
carries the exit status that :func:`run_cli` ends the process with, so scripts can tell the causes
apart:

    status  class (module)                                 cause
    2       ConfigError (engine.config)                    bad config key, value or argument
    3       DatasetError (dataset.errors) and subclasses   missing file, bad list line, bad label, size mismatch
    4       CheckpointError (model.errors)                 not a checkpoint, or one that does not fit the model
    5       NonFiniteLossError (engine.trainer)            NaN or infinite loss
    6       ResumeConflictError (engine.config)            resuming with settings that differ from the run's record
    7       WriteError (model.errors)                      a result or checkpoint could not be written (disk full, ...)
    130     (KeyboardInterrupt)                            interrupted with Ctrl-C
    143     TrainingInterrupted (engine.trainer)           SIGTERM: a resumable checkpoint was saved first

Anything else is a bug: it keeps its traceback and exit status 1. ``--debug`` on any command line
keeps the traceback of user errors too.

The classes are defined where they are raised; this module holds the base class (the lowest layer
that raises one), :class:`CheckpointError` and :class:`WriteError`.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

#: The flag that keeps tracebacks (:func:`run_cli` removes it before the tool parses its arguments).
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """An error the user can act on; the message names the file, line, key or value at fault."""

    #: exit status of a command that ends with this error
    exit_code = 1


class CheckpointError(UserError, RuntimeError):
    """A file that is not a checkpoint, or a checkpoint that does not fit the model."""

    exit_code = 4


class WriteError(UserError, OSError):
    """A file could not be written; the previous version of it, if any, is unchanged."""

    exit_code = 7


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line.

    An error re-raised from a DataLoader worker carries the worker's traceback in its message
    ("Caught X in DataLoader worker process 0. Original Traceback ..."); its last line, without
    the class name, is the original message.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        name, sep, message = last.partition(": ")
        text = message if sep and name.replace(".", "").replace("_", "").isalnum() else last
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__


def run_cli(main: Callable[[list[str] | None], Any], argv: Sequence[str] | None = None) -> None:
    """Run a tool's ``main(argv)``; a :class:`UserError` ends the process with one line
    ``error: <message>`` on stderr and the error's exit status (a traceback only with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    if debug:
        argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        main(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)

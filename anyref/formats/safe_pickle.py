"""Reading the pickles some releases ship (REFER's `refs(*).p`, HSNet's COCO fold lists) without running them.

A pickle can name any importable callable and call it while loading. These files hold only lists, dicts, strings
and numbers, which load without naming anything, so the unpickler below refuses every name: a payload that would
import or call something stops at that opcode, before anything runs.
"""
from __future__ import annotations

import pickle

from .common import AnyRefDataError, require_file


class _Refused(pickle.UnpicklingError):
    """The pickle asked for a global or a persistent object."""


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that loads plain containers, strings and numbers and refuses everything else."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {pid!r}")


def load_plain_pickle(path, what: str):
    """The content of a pickle of plain data; an error naming the file when it is truncated, corrupt or not plain.

    Python 2 byte strings (REFER's pickles were written by Python 2) are decoded as UTF-8.
    """
    path = require_file(path, what)
    with open(path, "rb") as handle:
        try:
            return PlainUnpickler(handle, encoding="utf-8").load()
        except _Refused as refused:
            raise AnyRefDataError(
                f"{what} {str(path)!r} asks for {refused} while loading: it holds more than lists, dicts, strings "
                "and numbers, so it was refused and nothing in it ran. A genuine release file never does this; "
                "replace it with the published one") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
                OverflowError, MemoryError, RecursionError) as error:
            raise AnyRefDataError(f"{what} {str(path)!r} is truncated or corrupt ({type(error).__name__}: {error}); "
                                  "re-download it") from None

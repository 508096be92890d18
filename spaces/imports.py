"""Loading user code named in a study file as ``"package.module:function"``.

Study files stay data (TOML); they may *name* an importable function (a task factory, a
student constructor), which is imported from the user's installed or ``PYTHONPATH`` code.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_object(target: str, *, key: str) -> Callable[..., Any]:
    """Import ``"package.module:attr"`` and return it; it must be callable.

    Args:
        target: The import string.
        key: The study-file key that named it, for the error message.

    Raises:
        ValueError: the string is malformed, the module or attribute cannot be imported,
            or the object is not callable. The message names ``key``.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(
            f"'{key}' must look like \"package.module:function\". Got {target!r} instead."
        )
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing user code
        raise ValueError(
            f"'{key}' = {target!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}). Is it installed or on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"'{key}' = {target!r}: module {module_name!r} has no {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"'{key}' = {target!r} is not callable.")
    return obj

"""Every way ``json.loads`` fails on bytes from an image, a registry or an engine, as one tuple.

Why one tuple: hostile JSON does not only fail to decode. An integer of more digits than
Python converts (4300) is a plain ``ValueError``, and nesting deeper than the interpreter's
stack is a ``RecursionError``; a site that caught only ``JSONDecodeError`` turned either
into a traceback that ended the run.
"""

from __future__ import annotations

JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, UnicodeDecodeError, RecursionError)
"""``JSONDecodeError`` and ``UnicodeDecodeError`` are ``ValueError``s; ``RecursionError`` is not."""

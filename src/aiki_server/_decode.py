"""Showing data that clients stored through codecs (``aiki.codecs``): decoded when the
server was given the codecs (``Settings.codecs``, ``AIKI_CODEC_KEYS_FILE``), left as the
envelope otherwise.

Clients with codecs store payloads, results, task inputs and results, event data (and,
if asked, error messages) as envelopes, ``"aiki:codec/1:<names>:<base64>"``. The API
hands them out as they are when the server cannot decode them (an HTTP client with the
key decodes them itself), with ``codec_errors`` naming what the server's own keys could
not decode and why; the dashboard and ``aiki runs show`` show them as "encrypted with
key id '1' (...)" instead of base64 (:func:`aiki_server._present.readable`).

Compressed data is always shown decoded (decompressing needs no secret). A failure to
decode is never a 500: the value stays the envelope, the reason (which names key ids,
never keys) goes into ``codec_errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiki.codecs import Chain, Codec, CodecError, Compression
from aiki.codecs import describe as describe_envelope

__all__ = ["Decoder"]

#: How deep the walk goes into a record (stored records are checked for depth on
#: write; this bounds the work on anything else).
_MAX_DEPTH = 64


class Decoder:
    """Decodes the envelopes inside API answers with the server's codecs."""

    def __init__(self, codecs: Sequence[Codec] = ()) -> None:
        given = tuple(codecs)
        if not any(c.family == Compression.family for c in given):
            given = (Compression(), *given)  # decoding zlib needs no configuration
        self.chain = Chain(given)
        self.keys_given = any(c.family != Compression.family for c in given)

    def value(self, value: Any) -> tuple[Any, str | None]:
        """``(decoded value, None)``, or ``(value, why not)`` for an envelope this
        server cannot decode (why not is None when it has no keys at all: then
        "encrypted" is all there is to say)."""
        if describe_envelope(value) is None:
            return value, None
        try:
            return self.chain.unwrap(value), None
        except CodecError as exc:
            return value, str(exc) if self.keys_given else None
        except (ValueError, TypeError) as exc:  # bad base64, or not JSON inside
            return value, f"the stored envelope is damaged: {type(exc).__name__}"

    def tree(self, data: Any) -> Any:
        """``data`` (an API answer: a run, a history document) with every envelope in
        it decoded where possible; a dict at the top gains ``codec_errors``
        (``{"<path>": "<why>"}``) when some could not be."""
        problems: dict[str, str] = {}
        out = self._walk(data, "", problems, 0)
        if problems and isinstance(out, dict):
            out["codec_errors"] = problems
        return out

    def _walk(self, node: Any, path: str, problems: dict[str, str], depth: int) -> Any:
        if isinstance(node, str):
            value, why = self.value(node)
            if why is not None:
                problems[path or "."] = why
            return value
        if depth >= _MAX_DEPTH:
            return node
        if isinstance(node, dict):
            return {
                k: self._walk(v, f"{path}.{k}" if path else str(k), problems, depth + 1)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [self._walk(v, f"{path}[{i}]", problems, depth + 1) for i, v in enumerate(node)]
        return node

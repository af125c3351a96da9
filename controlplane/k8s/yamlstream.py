"""Safe, bounded decoding of a multi-document YAML stream into plain Python values.

This is what ``yaml.safe_load_all`` does, rebuilt on PyYAML's event API (libyaml's
``CSafeLoader`` when available) so that abusive input fails one document cleanly instead of
exhausting memory or the stack: nesting depth, value count (alias expansions included, which
defeats "billion laughs") and stream size are capped (see ``limits``). Other differences from
``safe_load_all``: a bad document (unknown tag, bad timestamp, too deep) is reported and the
next documents still load; duplicate mapping keys produce a warning (the last value wins, as
in PyYAML); only the core scalar tags are accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

import yaml

from controlplane.k8s.errors import K8sError, LimitExceeded, YamlError, format_value
from controlplane.k8s.limits import (
    MAX_DOCUMENT_NODES,
    MAX_DOCUMENTS,
    MAX_NESTING_DEPTH,
    MAX_STREAM_BYTES,
)

__all__ = ["LOADER_NAME", "Document", "iter_documents"]

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

LOADER_NAME: Final = _Loader.__name__

_TAG: Final = "tag:yaml.org,2002:"
_STR_TAG: Final = _TAG + "str"
_MERGE_TAG: Final = _TAG + "merge"
_VALUE_TAG: Final = _TAG + "value"
_SCALAR_TAGS: Final = frozenset(
    _TAG + name for name in ("null", "bool", "int", "float", "str", "binary", "timestamp")
)
_MAP_TAGS: Final = frozenset({"!", _TAG + "map"})
_SEQ_TAGS: Final = frozenset({"!", _TAG + "seq"})


@dataclass(frozen=True, slots=True)
class Document:
    """One decoded document: ``index`` counts documents from 1, ``line`` is where it starts."""

    index: int
    line: int
    value: object


class _EventLoader(Protocol):
    def get_event(self) -> yaml.Event | None: ...

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str: ...

    def dispose(self) -> None: ...


class _Merge:
    """The ``<<`` merge key, as a mapping key."""

    __slots__ = ()


_MERGE: Final = _Merge()


class _Reject(Exception):
    """Abandon the current document; carries the error to report."""

    def __init__(self, error: K8sError) -> None:
        super().__init__(str(error))
        self.error = error


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = (
        "anchor",
        "has_key",
        "height",
        "is_map",
        "items",
        "key",
        "key_mark",
        "mark",
        "start_nodes",
    )

    def __init__(self, is_map: bool, anchor: str | None, start_nodes: int, mark: object) -> None:
        self.is_map = is_map
        self.items: list[tuple[object, object, object]] = []  # (key, value, key mark)
        self.anchor = anchor
        self.start_nodes = start_nodes
        self.height = 0
        self.mark = mark
        self.key: object = None
        self.key_mark: object = None
        self.has_key = False


def _line_col(mark: object) -> tuple[int | None, int | None]:
    line = getattr(mark, "line", None)
    column = getattr(mark, "column", None)
    return (
        line + 1 if isinstance(line, int) else None,
        column + 1 if isinstance(column, int) else None,
    )


def _yaml_error(source: str, exc: Exception, document: int | None) -> YamlError:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.problem:
            context_line, context_col = _line_col(exc.context_mark)
            problem += f" ({exc.context}"
            if context_line is not None:
                problem += f" at line {context_line}, column {context_col}"
            problem += ")"
        line, column = _line_col(exc.problem_mark or exc.context_mark)
        return YamlError(source, problem, line, column, document)
    if isinstance(exc, yaml.reader.ReaderError):
        return YamlError(
            source, f"{exc.reason} (at character {exc.position})", None, None, document
        )
    if isinstance(exc, UnicodeError):
        return YamlError(source, f"the text is not valid Unicode ({exc})", None, None, document)
    return YamlError(source, str(exc) or type(exc).__name__, None, None, document)


class _DocumentBuilder:
    """Turns the events of one document into a value, enforcing the limits."""

    def __init__(
        self, loader: _EventLoader, source: str, index: int, warn: Callable[[str], None]
    ) -> None:
        self._loader = loader
        self._source = source
        self._index = index
        self._warn = warn
        self._stack: list[_Frame] = []
        self._anchors: dict[str, tuple[object, int, int]] = {}  # value, nodes, height
        self._nodes = 0
        self.root: object = None

    # --- errors -------------------------------------------------------------------------
    def _where(self, mark: object) -> str:
        line, _ = _line_col(mark)
        where = f"{self._source}, document {self._index}"
        return f"{where}, line {line}" if line is not None else where

    def _reject(self, problem: str, mark: object) -> _Reject:
        line, column = _line_col(mark)
        return _Reject(YamlError(self._source, problem, line, column, self._index))

    def _limit(self, what: str, limit: str, maximum: int, mark: object) -> _Reject:
        return _Reject(LimitExceeded(self._where(mark), what, limit, maximum))

    def _count(self, nodes: int, mark: object) -> None:
        self._nodes += nodes
        if self._nodes > MAX_DOCUMENT_NODES:
            raise self._limit(
                "the document has too many values (aliases count once per use)",
                "MAX_DOCUMENT_NODES",
                MAX_DOCUMENT_NODES,
                mark,
            )

    def _check_depth(self, depth: int, mark: object) -> None:
        if depth > MAX_NESTING_DEPTH:
            raise self._limit(
                "the document nests lists and mappings too deeply",
                "MAX_NESTING_DEPTH",
                MAX_NESTING_DEPTH,
                mark,
            )

    # --- events -------------------------------------------------------------------------
    def feed(self, event: yaml.Event) -> None:
        """Consume one event between DocumentStart and DocumentEnd; may raise ``_Reject``."""
        mark = event.start_mark
        if isinstance(event, yaml.ScalarEvent):
            self._count(1, mark)
            value = self._scalar(event)
            self._add(value, 0, mark, collection=False)
            if event.anchor is not None:
                self._anchors[event.anchor] = (value, 1, 0)
        elif isinstance(event, yaml.AliasEvent):
            anchor = event.anchor or ""
            if anchor not in self._anchors:
                raise self._reject(f"alias *{anchor} refers to no (completed) anchor", mark)
            value, nodes, height = self._anchors[anchor]
            self._check_depth(len(self._stack) + height, mark)
            self._count(nodes, mark)
            self._add(value, height, mark, collection=height > 0)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            is_map = isinstance(event, yaml.MappingStartEvent)
            tags = _MAP_TAGS if is_map else _SEQ_TAGS
            if event.tag is not None and event.tag not in tags:
                raise self._reject(f"unsupported YAML tag {event.tag}", mark)
            self._check_depth(len(self._stack) + 1, mark)
            start = self._nodes
            self._count(1, mark)
            self._stack.append(_Frame(is_map, event.anchor, start, mark))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = self._stack.pop()
            built = self._finish(frame) if frame.is_map else [v for _, v, _ in frame.items]
            height = frame.height + 1
            if frame.anchor is not None:
                self._anchors[frame.anchor] = (built, self._nodes - frame.start_nodes, height)
            self._add(built, height, frame.mark, collection=True)

    def _scalar(self, event: yaml.ScalarEvent) -> object:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _MERGE_TAG:
            top = self._stack[-1] if self._stack else None
            if top is not None and top.is_map and not top.has_key:
                return _MERGE
            tag = _STR_TAG
        if tag == _VALUE_TAG:
            tag = _STR_TAG
        if tag not in _SCALAR_TAGS:
            raise self._reject(f"unsupported YAML tag {tag}", event.start_mark)
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)
        construct = _Loader.yaml_constructors[tag]
        try:
            value: object = construct(self._loader, node)
        except (
            yaml.YAMLError,
            ValueError,
            OverflowError,
            TypeError,
            LookupError,
            AttributeError,
        ) as exc:
            # PyYAML's scalar constructors fail in all these ways on odd input (``!!int ''``)
            reason = getattr(exc, "problem", None) or str(exc)
            raise self._reject(
                f"cannot read {format_value(event.value)} as {tag.removeprefix(_TAG)}: {reason}",
                event.start_mark,
            ) from None
        return value

    def _add(self, value: object, height: int, mark: object, *, collection: bool) -> None:
        if not self._stack:
            self.root = value
            return
        top = self._stack[-1]
        top.height = max(top.height, height)
        if not top.is_map:
            top.items.append((None, value, mark))
        elif not top.has_key:
            if collection or isinstance(value, (list, dict)):
                raise self._reject("a mapping key must be a scalar, not a list or mapping", mark)
            top.key = value
            top.key_mark = mark
            top.has_key = True
        else:
            top.items.append((top.key, value, top.key_mark))
            top.key = None
            top.has_key = False

    def _finish(self, frame: _Frame) -> dict[object, object]:
        merged: dict[object, object] = {}
        explicit: dict[object, object] = {}
        for key, value, mark in frame.items:
            if key is _MERGE:
                if isinstance(value, dict):
                    sources = [value]
                elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                    sources = list(reversed(value))  # earlier mappings win
                else:
                    raise self._reject(
                        "the value of a '<<' merge key must be a mapping or a list of mappings",
                        mark,
                    )
                for source in sources:
                    merged.update(source)
            else:
                if key in explicit:
                    self._warn(
                        f"{self._where(mark)}: duplicate key {format_value(key)} in a mapping; "
                        "the last value is used"
                    )
                explicit[key] = value
        if not merged:
            return explicit
        merged.update(explicit)
        return merged


def iter_documents(
    text: str, source: str, warn: Callable[[str], None]
) -> Iterator[Document | K8sError]:
    """Decode ``text`` document by document; never raises for bad input.

    Yields a ``Document`` for each document that decodes (its value may be ``None`` for an
    empty document), a ``YamlError``/``LimitExceeded`` for each that does not. A syntax
    error ends the stream: documents before it have already been yielded.
    """
    if (
        len(text) > MAX_STREAM_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > MAX_STREAM_BYTES
    ):
        yield LimitExceeded(
            source, "the YAML text is too large", "MAX_STREAM_BYTES", MAX_STREAM_BYTES
        )
        return
    try:
        loader: _EventLoader = _Loader(text)
    except (yaml.YAMLError, UnicodeError, ValueError) as exc:
        yield _yaml_error(source, exc, None)
        return
    try:
        yield from _documents(loader, source, warn)
    finally:
        loader.dispose()


def _documents(
    loader: _EventLoader, source: str, warn: Callable[[str], None]
) -> Iterator[Document | K8sError]:
    index = 0
    builder: _DocumentBuilder | None = None
    failed: K8sError | None = None
    line = 0
    while True:
        try:
            event = loader.get_event()
        except (yaml.YAMLError, UnicodeError, ValueError) as exc:
            if failed is not None:
                yield failed  # the document was already refused for another reason
            yield _yaml_error(source, exc, index if builder is not None else None)
            return
        if event is None or isinstance(event, yaml.StreamEndEvent):
            return
        if isinstance(event, yaml.DocumentStartEvent):
            index += 1
            if index > MAX_DOCUMENTS:
                yield LimitExceeded(
                    source, "the YAML text has too many documents", "MAX_DOCUMENTS", MAX_DOCUMENTS
                )
                return
            line = _line_col(event.start_mark)[0] or 1
            builder = _DocumentBuilder(loader, source, index, warn)
            failed = None
        elif isinstance(event, yaml.DocumentEndEvent):
            if failed is not None:
                yield failed
            elif builder is not None:
                yield Document(index, line, builder.root)
            builder = None
        elif builder is not None and failed is None:
            try:
                builder.feed(event)
            except _Reject as reject:
                failed = reject.error

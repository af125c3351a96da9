"""Every size limit of the Kubernetes object layer, in one place.

Stream limits protect the loader against huge or abusive input (deep nesting, alias bombs);
the object limits are Kubernetes' own.
"""

from __future__ import annotations

from typing import Final

# --- what the loader accepts -------------------------------------------------------------
MAX_STREAM_BYTES: Final = 8 * 1024 * 1024
"""Largest YAML stream accepted, in UTF-8 bytes (kubectl's own request limit is 3 MiB)."""

MAX_NESTING_DEPTH: Final = 64
"""Deepest nesting of mappings/lists in one document (Kubernetes objects need ~15)."""

MAX_DOCUMENT_NODES: Final = 200_000
"""Most values in one document, counting every alias expansion (defeats "billion laughs")."""

MAX_DOCUMENTS: Final = 10_000
"""Most documents in one stream."""

# --- Kubernetes' own limits --------------------------------------------------------------
MAX_DNS1123_LABEL: Final = 63
MAX_DNS1123_SUBDOMAIN: Final = 253
MAX_QUALIFIED_NAME: Final = 63
MAX_LABEL_VALUE: Final = 63
MAX_IANA_SVC_NAME: Final = 15
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
"""Total size of all annotation keys and values of one object."""

MAX_PORT: Final = 65535
MAX_INT32: Final = 2**31 - 1
MAX_INT64: Final = 2**63 - 1

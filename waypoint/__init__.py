"""The optional per-namespace L7 proxy: HTTP routing, resilience, L7 policy and telemetry.

Not built yet: issue 7 fills this package. It may import ``ztunnel`` and ``controlplane.api``.
"""

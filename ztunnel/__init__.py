"""The per-node L4 agent: capture hand-off, HBONE mTLS tunnels, L4 authorization and telemetry.

Not built yet: issues 5 and 6 fill this package. It may import ``bpf`` and ``controlplane.api``.
"""

"""The one-host lab: a Kubernetes-like cluster built from network namespaces."""

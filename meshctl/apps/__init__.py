"""Demo workloads the lab runs in place of container images (see ``meshctl.lab.images``)."""

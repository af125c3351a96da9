"""The control plane: reads and validates configuration, computes what each data-plane
component needs, pushes it, and runs the CA. Never imports the data plane."""

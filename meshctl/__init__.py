"""The command line (like istioctl) and the one-host lab."""

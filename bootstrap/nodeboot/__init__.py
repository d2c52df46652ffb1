"""nodeboot: join machines to an existing kubeadm cluster, and take them out again."""

__version__ = "0.1.0"

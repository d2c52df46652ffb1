"""The local lab: a real control plane and sandboxed worker hosts.

See README "What the tests run against" for what is real and what stands in.
"""

import os
from pathlib import Path


def python_path() -> str:
    """PYTHONPATH for lab processes started on hosts: this package and nodeboot's."""
    import nodeboot

    roots = (Path(__file__).resolve().parents[1], Path(nodeboot.__file__).resolve().parents[1])
    return os.pathsep.join(str(root) for root in roots)

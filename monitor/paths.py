"""Where the monitor finds the files it ships: the one lookup for templates and static files.

Templates live in the repository's top-level `templates/` (the product's fixed layout);
`monitor/templates` links to it, and an installed package (`pip install .`) carries a copy
there. `MONITOR_TEMPLATES_DIR` points elsewhere (an operator's own templates).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "web" / "static"


def templates_dir() -> Path:
    """The templates directory: `MONITOR_TEMPLATES_DIR`, else the package's `templates/`."""
    configured = os.environ.get("MONITOR_TEMPLATES_DIR", "").strip()
    return Path(configured) if configured else PACKAGE_DIR / "templates"

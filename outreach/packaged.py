"""Files that ship inside the package, so an installed `outreach` needs no checkout.

`outreach/data/templates` and `outreach/data/schedules.yaml` are symlinks to the
top-level `templates/` and `schedules.yaml`, the editable sources: the wheel
carries copies, a checkout reads the originals.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
TEMPLATES = DATA / "templates"
STARTER_CONFIG = DATA / "schedules.yaml"
SAMPLES = DATA / "sample"

"""`python -m tailor.core.events [PATH]`: write the event JSON Schema (default: schemas/event-v1.json)."""

from __future__ import annotations

import sys
from pathlib import Path

from tailor.core.events import schema

written = schema.write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else schema.SCHEMA_PATH)
print(f"wrote {written}")

"""Files that only the platform's own user may read: created so, not changed so afterwards."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def create_private_file(path: Path, text: str) -> bool:
    """Create `path` (mode 0600, its folder 0700 if new) holding `text`; False if it already exists.

    One step (O_CREAT | O_EXCL with the mode): no moment when others may read it, as there is
    between a write and a chmod, and of two processes creating it at once exactly one writes it.
    """
    path.parent.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as stream:
        stream.write(text)
    return True

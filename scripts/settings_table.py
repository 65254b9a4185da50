"""Print the README's settings table from handler/settings.py (the one source of truth)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handler.settings import SPECS


def main() -> None:
    print("| key | environment variable | default | meaning |")
    print("|---|---|---|---|")
    for s in SPECS:
        default = "**required**" if s.required else (f"`{s.default}`" if s.default is not None else "")
        secret = " (secret: never logged)" if s.secret else ""
        print(f"| `{s.key}` | `{s.env}` | {default} | {s.doc}{secret} |")


if __name__ == "__main__":
    main()

"""Print the README's settings table from handler/settings.py (the one source of truth).

    python -m influx_sink_tools.settings_table
"""

from __future__ import annotations

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

"""Moved to ``influx_sink_tools.settings_table`` (``python -m influx_sink_tools.settings_table``)."""
# transition shim: removed when the redesign lands

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if __name__ == "__main__":
    sys.exit(importlib.import_module("influx_sink_tools.settings_table").main())
sys.modules[__name__] = importlib.import_module("influx_sink_tools.settings_table")

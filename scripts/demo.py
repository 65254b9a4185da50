"""Moved to ``influx_sink_tools.demo`` (``python -m influx_sink_tools.demo``)."""
# transition shim: removed when the redesign lands

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if __name__ == "__main__":
    sys.exit(importlib.import_module("influx_sink_tools.demo").main())
sys.modules[__name__] = importlib.import_module("influx_sink_tools.demo")

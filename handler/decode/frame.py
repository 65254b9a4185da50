"""Avro framing for producers moved to the tools package: ``influx_sink_tools.framing``.

This name is kept only so that code not yet moved to the new path still imports; the module
object is the tools package's own, so patches and isinstance checks see one module.
"""
# transition shim: removed when the redesign lands

import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("influx_sink_tools.framing").main())
sys.modules[__name__] = importlib.import_module("influx_sink_tools.framing")

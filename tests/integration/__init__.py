"""Tests against real servers (InfluxDB 1.x, VictoriaMetrics, moto, the schema registry, the built package
under awslambdaric), each started by a fixture; stand-ins only where the real part cannot produce the case."""

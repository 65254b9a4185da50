"""influx-sink: the Lambda package. ``handler.app.lambda_handler`` is the entry point.

Stages (each a module with a narrow interface): ``records`` (event → KafkaRecord),
``decode`` (bytes → values), ``mapping`` (compiled KCQL plan: record → points),
``lineproto`` (point → line), ``influx`` (bulk writes), ``delivery`` (error policy → response).
"""

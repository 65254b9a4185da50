"""influx-sink's developer tools: the CLI, the local runner and the servers the tests and demos start.

Nothing here runs in Lambda. These modules import the function's package (``handler``); the
function's package never imports them, and ``sam build`` does not package them.
"""

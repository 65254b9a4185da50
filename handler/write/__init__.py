"""The write stage, in three layers that each own one thing.

- ``transport``: getting bytes to the server and its answer back — connections, TLS, timeouts
  cut short by the invocation's deadline, credentials (Basic auth, tokens, the URL's user info).
- ``protocol``: what a request means for each InfluxDB version (1.x ``/write``; 2.x and Cloud
  ``/api/v2/write``; 3.x ``/api/v3/write_lp``), the request body, and what an answer means: stored,
  some points refused (named by 3.x's partial write, else found by splitting the request until
  each refused point stands alone), or a batch error.
- ``schedule``: when requests go out — chunks of ``batch.lines`` lines, the writer thread that
  overlaps them with the mapping, retries with backoff until the deadline, and one request per
  database when statements name their own (KCQL ``DATABASE``).

Which records a refused point or a batch error holds back is the error policy's call, made in
``handler.delivery``: the writer only reports which lines were refused and from where nothing was
written. Nothing here imports the settings: ``handler.runtime`` builds the writer from them.
"""

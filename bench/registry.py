"""A small Confluent-contract schema registry for the benchmark: ``GET /schemas/ids/{id}`` only.

It runs on a thread of the bench process; the handler processes reach it over loopback HTTP,
as they would reach a real registry (the sink fetches each id once per process).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Registry:
    def __init__(self, schemas: dict[int, Any]) -> None:
        texts = {i: json.dumps({"schema": json.dumps(s)}).encode() for i, s in schemas.items()}
        self.requests = 0

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                parts = self.path.split("/")
                body = None
                if len(parts) == 4 and parts[1:3] == ["schemas", "ids"] and parts[3].isdigit():
                    body = texts.get(int(parts[3]))
                if body is None:
                    self.send_response(404)
                    body = b'{"error_code":40403,"message":"Schema not found"}'
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

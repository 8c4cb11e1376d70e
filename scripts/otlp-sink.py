#!/usr/bin/env python3
"""A minimal live OTLP/gRPC trace receiver for benchmarks: accepts every export, counts
the spans (parsed with the collector's own protobuf messages) and prints the count when
stopped (SIGTERM/SIGINT). Prints its port on the first line.

    .venv-tools/bin/python scripts/otlp-sink.py [PORT]
"""

import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.lock = threading.Lock()
        self.spans = 0
        self.exports = 0

    def Export(self, request, context):
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.spans += n
            self.exports += 1
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port(f"127.0.0.1:{sys.argv[1] if len(sys.argv) > 1 else 0}")
    server.start()
    print(port, flush=True)
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    done.wait()
    server.stop(0)
    print(f"otlp-sink: {sink.spans} spans in {sink.exports} exports", flush=True)


if __name__ == "__main__":
    main()

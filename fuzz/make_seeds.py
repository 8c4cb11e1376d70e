#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/seed-*.

Seeds are real requests built from models/*/samples.json (first sample of each model), the
config.toml files of the model zoo, and a few hand-made edge cases. Standard library only;
run from anywhere: python3 fuzz/make_seeds.py. Inputs libFuzzer found later are kept next
to the seeds under their SHA-1 names.
"""

import glob
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# KServe datatype -> (struct format, index in DataType::all()).
DTYPES = {
    "BOOL": ("?", 0), "UINT8": ("B", 1), "UINT16": ("H", 2), "UINT32": ("I", 3),
    "UINT64": ("Q", 4), "INT8": ("b", 5), "INT16": ("h", 6), "INT32": ("i", 7),
    "INT64": ("q", 8), "FP16": ("e", 9), "BF16": (None, 10), "FP32": ("f", 11),
    "FP64": ("d", 12),
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def samples():
    """(model, inputs) for the first sample of every model, plus a batch-2 dtype_echo one."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "samples.json"))):
        doc = json.load(open(path))
        out.append((doc["model"], doc["samples"][0]["inputs"]))
        if doc["model"] == "dtype_echo":
            out.append((doc["model"] + "-batch", doc["samples"][1]["inputs"]))
    return out


def pack(datatype, values):
    fmt, _ = DTYPES[datatype]
    return struct.pack("<%d%s" % (len(values), fmt), *values)


def nest(values, shape):
    if len(shape) <= 1:
        return list(values)
    step = len(values) // shape[0] if shape[0] else 0
    return [nest(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def v2_body(inputs, binary=False, params=None, outputs=None):
    body = {"id": "seed", "inputs": []}
    if params:
        body["parameters"] = params
    if outputs:
        body["outputs"] = outputs
    tail = b""
    for name, t in inputs.items():
        entry = {"name": name, "shape": t["shape"], "datatype": t["datatype"]}
        if binary:
            raw = pack(t["datatype"], t["data"])
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            entry["data"] = t["data"]
        body["inputs"].append(entry)
    head = json.dumps(body).encode()
    return head, tail


# --- protobuf, just what ModelInferRequest needs -------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def packed_varints(values):
    return b"".join(varint(int(v)) for v in values)


def parameter(key, choice, value):
    """A map<string, InferParameter> entry; choice is the InferParameter field number."""
    if choice in (1, 2, 5):
        p = field(choice, 0, varint(int(value)))
    elif choice == 3:
        p = field(3, 2, value.encode())
    else:
        p = field(4, 1, struct.pack("<d", value))
    return field(1, 2, key.encode()) + field(2, 2, p)


# Typed contents field per datatype: (InferTensorContents field, packing).
TYPED = {
    "BOOL": (1, "varint"), "INT8": (2, "varint"), "INT16": (2, "varint"),
    "INT32": (2, "varint"), "INT64": (3, "varint"), "UINT8": (4, "varint"),
    "UINT16": (4, "varint"), "UINT32": (4, "varint"), "UINT64": (5, "varint"),
    "FP32": (6, "f"), "FP64": (7, "d"),
}


def grpc_request(model, inputs, raw):
    msg = field(1, 2, model.encode()) + field(3, 2, b"seed")
    msg += field(4, 2, parameter("timeout", 2, 1000000))
    raws = []
    for name, t in inputs.items():
        tensor = field(1, 2, name.encode()) + field(2, 2, t["datatype"].encode())
        tensor += field(3, 2, packed_varints(t["shape"]))
        if raw or t["datatype"] not in TYPED:
            raws.append(pack(t["datatype"], t["data"]))
        else:
            num, kind = TYPED[t["datatype"]]
            if kind == "varint":
                payload = packed_varints(t["data"])
            else:
                payload = struct.pack("<%d%s" % (len(t["data"]), kind), *t["data"])
            tensor += field(5, 2, field(num, 2, payload))
        msg += field(5, 2, tensor)
    msg += field(6, 2, field(1, 2, b"out"))
    # A request uses one form: raw for all inputs when any needs it.
    if raws and len(raws) != len(inputs):
        return None
    for r in raws:
        msg += field(7, 2, r)
    return msg


def main():
    zoo = samples()
    for model, inputs in zoo:
        head, _ = v2_body(inputs)
        write("v2_json", model, head)
        head, tail = v2_body(inputs, binary=True, params={"binary_data_output": True})
        write("v2_binary", model, struct.pack("<H", len(head)) + head + tail)
        named = {n: nest(t["data"], t["shape"]) for n, t in inputs.items()}
        write("predict", model, json.dumps({"model": model, "inputs": named}))
        for raw in (False, True):
            msg = grpc_request(model, inputs, raw)
            if msg is not None:
                write("grpc_request", model + ("-raw" if raw else "-typed"), msg)
        body = json.dumps({"model": model, "inputs": named}).encode()
        write("decompression", model + "-gzip", b"\x00" + gzip.compress(body))
        write("decompression", model + "-deflate", b"\x01" + zlib.compress(body))

    # Hand-made V2 edge cases: parameters, outputs, empty tensors, scalars, big numbers.
    one = {"x": {"datatype": "FP32", "shape": [1, 2], "data": [1.5, -2]}}
    head, _ = v2_body(one, params={"timeout": 5000}, outputs=[
        {"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}])
    write("v2_json", "params", head)
    write("v2_json", "empty", json.dumps({"inputs": [
        {"name": "x", "shape": [0, 4], "datatype": "INT64", "data": []}]}))
    write("v2_json", "nested", json.dumps({"inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "UINT64",
         "data": [[18446744073709551615, 0], [1, 2]]}]}))
    write("v2_json", "bool", json.dumps({"inputs": [
        {"name": "x", "shape": [3], "datatype": "BOOL", "data": [True, 0, 1]}]}))
    head, tail = v2_body({"x": {"datatype": "FP16", "shape": [2], "data": [0.5, -1.0]},
                          "y": {"datatype": "UINT16", "shape": [1], "data": [65535]}},
                         binary=True)
    write("v2_binary", "mixed", struct.pack("<H", len(head)) + head + tail)
    bf = {"inputs": [{"name": "x", "shape": [2], "datatype": "BF16",
                      "parameters": {"binary_data_size": 4}}]}
    head = json.dumps(bf).encode()
    write("v2_binary", "bf16", struct.pack("<H", len(head)) + head + b"\x80\x3f\x00\xc0")

    write("predict", "bare", json.dumps({"model": "m", "inputs": [[1, 2.5], [3, 4]]}))
    write("predict", "options", json.dumps({
        "model": "m", "version": "1", "inputs": {"a": [[True, False]], "b": 3},
        "timeout_ms": 10, "outputs": ["y"]}))
    write("predict", "empty", json.dumps({"model": "m", "inputs": {"a": [[], []]}}))

    # Decompression: a bomb (1 MiB of zeros, over the 64 KiB limit), identity, a corrupt
    # stream, an unsupported encoding.
    zeros = bytes(1 << 20)
    write("decompression", "bomb-gzip", b"\x00" + gzip.compress(zeros, 9))
    write("decompression", "bomb-deflate", b"\x01" + zlib.compress(zeros, 9))
    write("decompression", "identity", b"\x02" + b'{"inputs": []}')
    write("decompression", "both", b"\x03" + zlib.compress(gzip.compress(b"[1, 2]")))
    write("decompression", "corrupt", b"\x00" + gzip.compress(b"hello")[:-6] + b"xxxxxx")
    write("decompression", "br", b"\x04" + b"\x0b\x02\x80hello\x03")

    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "config.toml"))):
        write("config_toml", os.path.basename(os.path.dirname(path)), open(path).read())
    write("config_toml", "all-keys", """max_batch_size = 64
instances = 2
intra_op_threads = 1
max_queue_delay_us = 500
preferred_batch_sizes = [16, 32]
max_queue_size = 256
default_timeout_ms = 1000
max_request_rows = 100000
execution_provider = "cuda"
fallback = "cpu"
device_ids = [0, 1]

[inputs.hist]
pad_axes = [1, 2]
pad_value = -1.5
""")
    write("config_toml", "server", """model_repository = "models"
host = "127.0.0.1"
http_port = 8000
grpc_port = 8001
metrics_port = 9090
intra_op_threads = 2
execution_provider = "cpu"
execution_provider_fallback = "error"
max_body_bytes = 1048576
log_format = "json"
log_level = "mlpserve=debug"
shutdown_timeout = 10
""")

    # Binary tensors: [datatype index, rank byte, dims..., bytes...].
    def tensor(datatype, shape, payload, wide=False):
        width = "Q" if wide else "H"
        rank = len(shape) | (0x80 if wide else 0)
        head = bytes([DTYPES[datatype][1], rank])
        return head + struct.pack("<%d%s" % (len(shape), width), *shape) + payload

    write("tensor_binary", "f32", tensor("FP32", [2, 2], pack("FP32", [1, -2, 3.5, 0])))
    write("tensor_binary", "i64", tensor("INT64", [3], pack("INT64", [-1, 0, 2 ** 62])))
    write("tensor_binary", "bool", tensor("BOOL", [4], b"\x00\x01\x02\xff"))
    write("tensor_binary", "f16", tensor("FP16", [1, 2], pack("FP16", [0.5, 2])))
    write("tensor_binary", "bf16", tensor("BF16", [2], b"\x80\x3f\x00\xc0"))
    write("tensor_binary", "scalar", tensor("UINT16", [], b"\xff\xff"))
    write("tensor_binary", "empty", tensor("FP64", [0, 5], b""))
    write("tensor_binary", "huge-shape", tensor("FP32", [2 ** 40, 2 ** 40], b"\x00" * 8, wide=True))


if __name__ == "__main__":
    main()

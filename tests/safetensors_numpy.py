#!/usr/bin/python3
"""Reads a safetensors file with NumPy alone, following the published format
(https://huggingface.co/docs/safetensors: 8-byte little-endian header length, JSON header,
little-endian row-major data), independently of thor's reader. Prints one JSON object:
{name: {"dtype", "shape", "sum" (float64), "first", "last"}} and "__metadata__"."""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}

with open(sys.argv[1], "rb") as f:
    raw = f.read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n].decode("utf-8"))
data = raw[8 + n:]
out = {"__metadata__": header.pop("__metadata__", {})}
for name, info in header.items():
    begin, end = info["data_offsets"]
    a = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    flat = a.reshape(-1)
    out[name] = {"dtype": info["dtype"], "shape": list(a.shape), "sum": float(a.astype(np.float64).sum()),
                 "first": float(flat[0]) if flat.size else None, "last": float(flat[-1]) if flat.size else None}
json.dump(out, sys.stdout)

"""Makes Tests/Fixtures/cases/2026-12-07/binary_logit.safetensors and binary_data.npz: a
single-logit binary classifier (the class-3-minus-class-5 logit of digits_lstm8's readout) and the
digits test sequences of classes 3 (label 1) and 5 (label 0). Needs numpy only:
    python Tools/make_binary_fixture.py
"""
import json
import os
import struct

import numpy as np

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
out_dir = os.path.join(root, "cases", "2026-12-07")


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return header.pop("__metadata__", {}), header, raw[8 + n:]


def array(header, data, key):
    entry = header[key]
    start, end = entry["data_offsets"]
    dtype = {"F32": np.float32, "I64": np.int64, "I32": np.int32}[entry["dtype"]]
    return np.frombuffer(data[start:end], dtype=dtype).reshape(entry["shape"])


meta, header, data = read(os.path.join(root, "digits_lstm8.safetensors"))
tensors = {k: array(header, data, k) for k in header if not k.startswith("golden")}
weight, bias = meta["readout_weight"], meta["readout_bias"]
tensors[weight] = (tensors[weight][3] - tensors[weight][5])[None, :].astype(np.float32)
tensors[bias] = np.array([tensors[bias][3] - tensors[bias][5]], dtype=np.float32)
meta = {k: v for k, v in meta.items() if not k.startswith("golden")}
meta["trained_by"] = "Tools/make_binary_fixture.py (class 3 minus class 5 of digits_lstm8)"
out, blob = {"__metadata__": meta}, b""
for key in sorted(tensors):
    values = np.ascontiguousarray(tensors[key])
    kind = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}[values.dtype]
    out[key] = {"dtype": kind, "shape": list(values.shape), "data_offsets": [len(blob), len(blob) + values.nbytes]}
    blob += values.tobytes()
encoded = json.dumps(out).encode()
encoded += b" " * ((8 - len(encoded) % 8) % 8)
with open(os.path.join(out_dir, "binary_logit.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(encoded)) + encoded + blob)

_, test_header, test_data = read(os.path.join(root, "digits_test.safetensors"))
x, y = array(test_header, test_data, "inputs"), array(test_header, test_data, "labels")
keep = (y == 3) | (y == 5)
np.savez(os.path.join(out_dir, "binary_data.npz"), inputs=x[keep].astype(np.float32), labels=(y[keep] == 3).astype(np.int64))
print(f"wrote binary_logit.safetensors and binary_data.npz ({int(keep.sum())} sequences)")

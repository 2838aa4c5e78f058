#!/usr/bin/python3
"""Writes what tools/convert_fairseq.py reads, made up for a test: a PyTorch-format zip
checkpoint (pickled like torch.save, written without PyTorch) of a tiny fairseq transformer
(dense, or THOR with E experts in every even layer) with random weights, its dictionary
(the SentencePiece model's pieces in another order, less two, plus fairseq's padding
symbol), and expected.safetensors: the thor tensors the conversion must give, computed here
directly from the definitions (fairseq's rows 1, 3, 0, 2 for thor's specials; W^T per
expert; thor position row r = fairseq position r + 1, fairseq numbering its first token 2).

    fake_fairseq_checkpoint.py SPM.model OUT_DIR EXPERTS
"""
import collections
import io
import json
import math
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

spm_path, out, experts = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(7)

# the pieces of the SentencePiece model (protobuf field 1 of ModelProto, field 1 of each)
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return v, i
raw = open(spm_path, "rb").read()
pieces, i = [], 0
while i < len(raw):
    key, i = varint(raw, i)
    if key & 7 == 2:
        n, j = varint(raw, i)
        if key >> 3 == 1:
            msg, k = raw[j:j + n], 0
            kk, k = varint(msg, k); m, k = varint(msg, k)
            pieces.append(msg[k:k + m].decode("utf-8"))
        i = j + n
    elif key & 7 == 0:
        _, i = varint(raw, i)
    elif key & 7 == 5:
        i += 4
    else:
        i += 8
normal = pieces[4:]
# fairseq's dictionary: by "frequency" (a shuffle), two pieces never seen, one padding symbol
order = list(rng.permutation(len(normal)))
unseen = [normal[order[-1]], normal[order[-2]]]
dict_tokens = [normal[k] for k in order[:-2]] + ["madeupword0000"]
with open(out + "/dict.txt", "w", encoding="utf-8") as f:
    for n, t in enumerate(dict_tokens):
        f.write("%s %d\n" % (t, 1000 - n))
V = 4 + len(dict_tokens)

d, ffn, heads, layers, maxpos = 8, 16, 2, 2, 32
def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)
state = collections.OrderedDict()
emb = r(V, d)
state["encoder.embed_tokens.weight"] = emb
state["decoder.embed_tokens.weight"] = emb
state["decoder.output_projection.weight"] = emb
state["encoder.embed_positions._float_tensor"] = np.zeros(1, np.float32)
for side in ("encoder", "decoder"):
    for l in range(layers):
        p = "%s.layers.%d." % (side, l)
        for a in ["self_attn"] + (["encoder_attn"] if side == "decoder" else []):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                state[p + a + "." + proj + ".weight"] = r(d, d)
                state[p + a + "." + proj + ".bias"] = r(d)
            state[p + a + "_layer_norm.weight"] = r(d)
            state[p + a + "_layer_norm.bias"] = r(d)
        names = ["fc1.%d." % e for e in range(experts)] if experts > 1 and l % 2 == 0 else ["fc1."]
        for nm in names:
            state[p + nm + "weight"] = r(ffn, d)
            state[p + nm + "bias"] = r(ffn)
            state[p + nm.replace("fc1", "fc2") + "weight"] = r(d, ffn)
            state[p + nm.replace("fc1", "fc2") + "bias"] = r(d)
        state[p + "final_layer_norm.weight"] = r(d)
        state[p + "final_layer_norm.bias"] = r(d)

# torch.save's pickle, made without PyTorch: fake torch modules give the globals their names
torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")
class FloatStorage: pass
FloatStorage.__module__ = "torch"
torch_mod.FloatStorage = FloatStorage
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
class Storage:
    def __init__(self, key, n): self.key, self.n = key, n
class Tensor:
    def __init__(self, storage, shape): self.storage, self.shape = storage, shape
    def __reduce__(self):
        stride, s = [], 1
        for dim in reversed(self.shape):
            stride.insert(0, s); s *= dim
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.n)
        return None
blobs, model = {}, collections.OrderedDict()
for n, (name, a) in enumerate(state.items()):
    blobs[str(n)] = a.astype("<f4").tobytes()
    model[name] = Tensor(Storage(str(n), a.size), a.shape)
import argparse
args = argparse.Namespace(encoder_attention_heads=heads, max_source_positions=maxpos, max_target_positions=maxpos,
                          source_lang="de", target_lang="en", num_experts=experts if experts > 1 else None)
buf = io.BytesIO()
Pickler(buf, protocol=2).dump({"args": args, "model": model, "optimizer_history": []})
with zipfile.ZipFile(out + "/checkpoint.pt", "w") as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/version", "3\n")
    for k, b in blobs.items():
        z.writestr("archive/data/" + k, b)

# what thor must hold: fairseq row of each thor id, then the tensors under thor's names
rows = [1, 3, 0, 2] + list(range(4, V)) + [3, 3]  # the two unseen pieces: fairseq's <unk>
exp = collections.OrderedDict()
exp["encoder_embed.weight"] = emb[rows]
for side in ("encoder", "decoder"):
    for l in range(layers):
        p, q = "%s.layers.%d." % (side, l), "%s_layers.%d." % (side, l)
        for key in [k for k in state if k.startswith(p) and ".fc" not in k]:
            exp[q + key[len(p):]] = state[key]
        es = range(experts) if experts > 1 and l % 2 == 0 else [None]
        fc = lambda which, e: p + which + ("" if e is None else ".%d" % e) + "."
        exp[q + "ffn.w1"] = np.stack([state[fc("fc1", e) + "weight"].T for e in es])
        exp[q + "ffn.b1"] = np.stack([state[fc("fc1", e) + "bias"] for e in es])
        exp[q + "ffn.w2"] = np.stack([state[fc("fc2", e) + "weight"].T for e in es])
        exp[q + "ffn.b2"] = np.stack([state[fc("fc2", e) + "bias"] for e in es])
half = d // 2
freq = np.exp(np.arange(half) * -(math.log(10000.0) / (half - 1)))
pos = np.arange(1, maxpos + 2)[:, None] * freq[None, :]  # thor row r = fairseq position r + 1 (thor row 1 is the first token, fairseq position 2)
exp["positions"] = np.concatenate([np.sin(pos), np.cos(pos)], axis=1).astype(np.float32)
header, off, data = {}, 0, b""
for name, a in exp.items():
    a = np.ascontiguousarray(a, dtype="<f4")
    header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes; data += a.tobytes()
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(out + "/expected.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
json.dump({"dict_tokens": dict_tokens, "unseen": unseen}, open(out + "/pieces.json", "w"))

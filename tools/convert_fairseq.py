#!/usr/bin/python3
"""Converts a fairseq `transformer` checkpoint, or one of the official THOR code
(`thor_transformer_*`: E experts in the FFN of every even layer), into the directory
`thor import --from DIR --out MODEL.pt` reads: model.safetensors (thor's tensor names),
config.json ({"thor": model config, "thor_meta": languages}) and sentencepiece.model.

    convert_fairseq.py CHECKPOINT --dict DICT.txt --spm SPM.model --out DIR \
        [--source-lang de --target-lang en] [--heads N]

The model must have been trained on SentencePiece pieces of SPM.model (as bench/official
prepares its data: thor's pieces binarised by fairseq-preprocess with a joined dictionary).

Needs Python 3 and NumPy only (Debian's python3-numpy): the checkpoint (a PyTorch zip
archive) is read with a restricted unpickler that rebuilds tensors as NumPy arrays and
stands in for fairseq's and omegaconf's classes, so neither fairseq nor PyTorch is needed.

What makes thor decode as fairseq-generate does:
  * ids: thor keeps fairseq's dictionary order (ids 4..V-1 are the same tokens); its
    specials are pad 0, unk 1, <s> 2, </s> 3, so rows 0-3 are fairseq's 1, 3, 0, 2. The
    SentencePiece model is rewritten in that order (segmentation unchanged: the same pieces
    and scores); pieces fairseq's dictionary lacks go last with fairseq's <unk> embedding,
    as fairseq maps them to <unk>.
  * the decoder starts from </s> as in fairseq: bos_id = eos_id in the config.
  * positions: fairseq numbers tokens from padding_idx + 1 = 2, thor from 1: thor's
    position table is fairseq's shifted by one row.
  * FFN weights are stored [in, out] per expert: w1[e] = fc1(.e).weight^T.
"""
import argparse
import collections
import io
import json
import math
import pickle
import struct
import sys
import zipfile

import numpy as np

# ---------------------------------------------------------------------------------------
# reading a PyTorch zip checkpoint without PyTorch

STORAGE_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
                  "BFloat16Storage": None}


class Stub:
    """Any class the checkpoint names that is not needed (fairseq, omegaconf, ...)."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state):
        self.state = state


class StorageType:
    def __init__(self, name):
        self.name = name


def rebuild_tensor(storage, offset, size, stride, *unused):
    data, dtype = storage
    itemsize = np.dtype(dtype).itemsize
    if len(size) == 0:
        return np.array(data[offset])
    return np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride)).copy()


def rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class CheckpointUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "argparse" and name == "Namespace":
            return argparse.Namespace
        if module == "builtins" and name in ("dict", "list", "set", "tuple", "frozenset", "int", "float", "str", "bool"):
            return getattr(__import__("builtins"), name)
        return Stub

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError("unknown persistent id %r" % (kind,))
        dtype = STORAGE_DTYPES.get(storage_type.name)
        if dtype is None:
            raise SystemExit("convert_fairseq: tensors of %s are not supported" % storage_type.name)
        if key not in self.storages:
            raw = self.archive.read(self.prefix + "data/" + key)
            self.storages[key] = (np.frombuffer(raw, dtype=dtype), dtype)
        return self.storages[key]


def load_checkpoint(path):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise SystemExit("convert_fairseq: %s: not a PyTorch zip checkpoint (saved with torch >= 1.6)" % path)
    names = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if not names:
        raise SystemExit("convert_fairseq: %s: no data.pkl in the archive" % path)
    prefix = names[0][: -len("data.pkl")]
    with archive.open(names[0]) as f:
        return CheckpointUnpickler(io.BytesIO(f.read()), archive, prefix).load()


def find_key(obj, key, depth=0):
    """The first value of `key` anywhere in the unpickled object graph (args, cfg)."""
    if depth > 8:
        return None
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    elif isinstance(obj, Stub):
        obj = getattr(obj, "state", None) or obj.kwargs
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, Stub)):
            return obj[key]
        for v in obj.values():
            found = find_key(v, key, depth + 1)
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = find_key(v, key, depth + 1)
            if found is not None:
                return found
    return None

# ---------------------------------------------------------------------------------------
# SentencePiece model (protobuf wire format) rewritten in fairseq's order


def read_varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def write_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def fields(b):
    """(field number, wire type, raw bytes of the whole field) for each field of a message."""
    i = 0
    while i < len(b):
        start = i
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, i = read_varint(b, i)
        elif wt == 1:
            i += 8
        elif wt == 2:
            n, i = read_varint(b, i)
            i += n
        elif wt == 5:
            i += 4
        else:
            raise SystemExit("convert_fairseq: unreadable SentencePiece model (wire type %d)" % wt)
        yield num, wt, b[start:i]


def payload(raw):
    _, i = read_varint(raw, 0)
    n, i = read_varint(raw, i)
    return raw[i:i + n]


def piece_message(piece, score, ptype):
    p = piece.encode("utf-8")
    body = b"\x0a" + write_varint(len(p)) + p + b"\x15" + struct.pack("<f", score) + b"\x18" + write_varint(ptype)
    return b"\x0a" + write_varint(len(body)) + body


def parse_piece(msg):
    piece, score, ptype = "", 0.0, 1
    for num, wt, raw in fields(msg):
        if num == 1:
            piece = payload(raw).decode("utf-8")
        elif num == 2:
            score = struct.unpack("<f", raw[-4:])[0]
        elif num == 3:
            ptype = read_varint(raw, 1)[0]
    return piece, score, ptype


NORMAL, UNUSED = 1, 5


def reorder_spm(spm_bytes, fairseq_tokens):
    """fairseq_tokens: fairseq's symbols from index 4 on. Returns (new model bytes, the
    number of ids, the fairseq row of every thor id)."""
    pieces, other = [], []
    for num, wt, raw in fields(spm_bytes):
        (pieces if num == 1 else other).append(parse_piece(payload(raw)) if num == 1 else raw)
    if len(pieces) < 4 or [p[0] for p in pieces[:4]] != ["<pad>", "<unk>", "<s>", "</s>"]:
        raise SystemExit("convert_fairseq: the SentencePiece model does not start with <pad> <unk> <s> </s> "
                         "(thor prepare's layout)")
    by_piece = {p[0]: p for p in pieces[4:]}
    order = list(pieces[:4])
    rows = [1, 3, 0, 2]  # thor pad, unk, <s>, </s> <- fairseq <pad>, <unk>, <s>, </s>
    for k, tok in enumerate(fairseq_tokens):
        p = by_piece.pop(tok, None)
        order.append(p if p is not None else (tok, 0.0, UNUSED))  # e.g. madeupword0000
        rows.append(4 + k)
    for p in pieces[4:]:  # pieces fairseq never saw: its <unk>
        if p[0] in by_piece:
            order.append(p)
            rows.append(3)
    out = b"".join(piece_message(*p) for p in order) + b"".join(other)
    return out, len(order), rows


def read_dict(path):
    tokens = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(" ")
            if len(parts) < 2:
                raise SystemExit("convert_fairseq: %s:%d: expected 'token count'" % (path, n))
            tokens.append(parts[0])
    return tokens

# ---------------------------------------------------------------------------------------
# the mapping


def sinusoids(n, dim, first):
    """fairseq's SinusoidalPositionalEmbedding table rows first .. first + n - 1."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * -(math.log(10000.0) / (half - 1)))
    args = np.arange(first, first + n, dtype=np.float32)[:, None] * freq[None, :]
    table = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((n, 1), np.float32)], axis=1)
    return table.astype(np.float32)


def convert(state, rows, vocab_size, heads, max_positions, num_experts_hint=None):
    """fairseq state dict -> (thor tensors, thor model config)."""
    def get(name):
        if name not in state:
            raise SystemExit("convert_fairseq: the checkpoint lacks %s" % name)
        return np.asarray(state[name], dtype=np.float32)

    enc_emb = get("encoder.embed_tokens.weight")
    d_model = enc_emb.shape[1]
    n_enc = len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")})
    n_dec = len({k.split(".")[2] for k in state if k.startswith("decoder.layers.")})
    experts = max([int(k.split(".")[4]) + 1 for k in state
                   if k.startswith(("encoder.layers.", "decoder.layers.")) and ".fc1." in k and k.split(".")[4].isdigit()]
                  or [1])
    if num_experts_hint and experts != 1 and num_experts_hint != experts:
        raise SystemExit("convert_fairseq: num_experts %d in the args, %d in the weights" % (num_experts_hint, experts))
    pre_norm = "encoder.layer_norm.weight" in state
    dec_emb = get("decoder.embed_tokens.weight")
    share_all = np.array_equal(enc_emb, dec_emb) and "decoder.output_projection.weight" in state and \
        np.array_equal(dec_emb, get("decoder.output_projection.weight"))
    share_io = "decoder.output_projection.weight" not in state or \
        np.array_equal(dec_emb, get("decoder.output_projection.weight"))
    out = collections.OrderedDict()
    idx = np.asarray(rows)
    out["encoder_embed.weight"] = enc_emb[idx]
    if not share_all:
        out["decoder_embed.weight"] = dec_emb[idx]
    if not share_io:
        out["output_projection"] = get("decoder.output_projection.weight")[idx]
    ffn_dim = None
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            src, dst = "%s.layers.%d." % (side, i), "%s_layers.%d." % (side, i)
            attns = ["self_attn"] + (["encoder_attn"] if side == "decoder" else [])
            for a in attns:
                for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    for w in ("weight", "bias"):
                        out[dst + "%s.%s.%s" % (a, p, w)] = get(src + "%s.%s.%s" % (a, p, w))
                out[dst + a + "_layer_norm.weight"] = get(src + a + "_layer_norm.weight")
                out[dst + a + "_layer_norm.bias"] = get(src + a + "_layer_norm.bias")
            expert_layer = experts > 1 and i % 2 == 0
            names = ["fc1.%d." % e for e in range(experts)] if expert_layer else ["fc1."]
            w1 = [get(src + nm + "weight").T for nm in names]
            ffn_dim = w1[0].shape[1]
            out[dst + "ffn.w1"] = np.stack(w1)
            out[dst + "ffn.b1"] = np.stack([get(src + nm + "bias") for nm in names])
            out[dst + "ffn.w2"] = np.stack([get(src + nm.replace("fc1", "fc2") + "weight").T for nm in names])
            out[dst + "ffn.b2"] = np.stack([get(src + nm.replace("fc1", "fc2") + "bias") for nm in names])
            out[dst + "final_layer_norm.weight"] = get(src + "final_layer_norm.weight")
            out[dst + "final_layer_norm.bias"] = get(src + "final_layer_norm.bias")
    if pre_norm:
        for side, name in (("encoder", "encoder_norm"), ("decoder", "decoder_norm")):
            out[name + ".weight"] = get(side + ".layer_norm.weight")
            out[name + ".bias"] = get(side + ".layer_norm.bias")
    out["positions"] = sinusoids(max_positions + 1, d_model, 1)
    if d_model % heads:
        raise SystemExit("convert_fairseq: %d heads do not divide the model dimension %d" % (heads, d_model))
    cfg = {"arch": "fairseq_import", "vocab_size": vocab_size, "pad_id": 0, "unk_id": 1, "bos_id": 3, "eos_id": 3,
           "d_model": d_model, "ffn_dim": ffn_dim, "heads": heads, "encoder_layers": n_enc, "decoder_layers": n_dec,
           "pre_norm": pre_norm, "share_all_embeddings": bool(share_all),
           "share_decoder_input_output_embed": bool(share_io and not share_all), "max_positions": max_positions,
           "num_experts": experts, "expert_layers": "even", "router": "thor", "dropout": 0.0}
    return out, cfg

# ---------------------------------------------------------------------------------------


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    header["__metadata__"] = {"format": "pt", "producer": "thor tools/convert_fairseq.py"}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--dict", required=True, help="fairseq's (joined) dictionary, dict.SRC.txt")
    ap.add_argument("--spm", required=True, help="the SentencePiece model the data was cut with")
    ap.add_argument("--out", required=True, help="directory to write")
    ap.add_argument("--source-lang", default=None)
    ap.add_argument("--target-lang", default=None)
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: from the checkpoint's args)")
    a = ap.parse_args()

    ckpt = load_checkpoint(a.checkpoint)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise SystemExit("convert_fairseq: %s: no 'model' state dict (not a fairseq checkpoint?)" % a.checkpoint)
    state = ckpt["model"]
    meta = {k: ckpt.get(k) for k in ("args", "cfg")}
    heads = a.heads or find_key(meta, "encoder_attention_heads")
    if not heads:
        raise SystemExit("convert_fairseq: the checkpoint does not say its attention heads: give --heads")
    max_pos = int(min(find_key(meta, "max_source_positions") or 1024, find_key(meta, "max_target_positions") or 1024))
    src = a.source_lang or find_key(meta, "source_lang")
    tgt = a.target_lang or find_key(meta, "target_lang")

    tokens = read_dict(a.dict)
    with open(a.spm, "rb") as f:
        spm, vocab_size, rows = reorder_spm(f.read(), tokens)
    emb_rows = np.asarray(state["encoder.embed_tokens.weight"]).shape[0]
    if emb_rows != 4 + len(tokens):
        raise SystemExit("convert_fairseq: %s has %d symbols (+4 specials), the embeddings %d rows" %
                         (a.dict, len(tokens), emb_rows))
    tensors, cfg = convert(state, rows, vocab_size, int(heads), max_pos, find_key(meta, "num_experts"))

    import os
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "model.safetensors"), tensors)
    with open(os.path.join(a.out, "sentencepiece.model"), "wb") as f:
        f.write(spm)
    meta_out = {"src_lang": src or "src", "tgt_lang": tgt or "tgt", "target_tags": False, "vocab_size": vocab_size,
                "lang_tags": [], "splits": {},
                "pairs": [{"src": src or "src", "tgt": tgt or "tgt", "splits": {}}], "format": "thor-data-1"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"model_type": "thor", "converted_from": os.path.abspath(a.checkpoint), "thor": cfg,
                   "thor_meta": meta_out}, f, indent=2)
    print("convert_fairseq: %s -> %s (%d tensors, %d experts, vocabulary %d)" %
          (a.checkpoint, a.out, len(tensors), cfg["num_experts"], vocab_size), file=sys.stderr)


if __name__ == "__main__":
    main()

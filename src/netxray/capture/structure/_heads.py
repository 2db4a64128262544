"""Permutable spaces, part 3 — attention heads and experts: the axes that permute whole heads
(:func:`head_axes`) or mixture-of-experts members (:func:`expert_axes`).

Split out of :mod:`netxray.capture.structure._spaces`, which re-exports every name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netxray.capture.structure._ops import (
    _is_conv1d_hf,
)


def head_axes(model: nn.Module) -> list[dict[str, Any]]:
    """Head permutations of the attention modules of ``model`` whose layout is known:
    ``nn.MultiheadAttention`` (packed in_proj), Hugging Face q/k/v(/o) projections (BERT, ViT,
    RoBERTa: ``query/key/value`` with the output projection in the sibling ``output.dense``;
    Llama-style ``q_proj/k_proj/v_proj/o_proj`` with grouped-query attention; GPT-2's packed
    ``c_attn``/``c_proj`` Conv1D), timm/netxray ``qkv``/``proj``. Each entry: name, layer,
    size, members (writers, readers) and the note; with grouped-query attention one entry for
    the key/value groups and one per group for the query heads inside it."""
    from netxray.capture.structure._parts import Member

    out: list[dict[str, Any]] = []
    mods = dict(model.named_modules())

    def cfg_int(mod: nn.Module, *names: str) -> int | None:
        for nm in names:
            v = getattr(mod, nm, None)
            if isinstance(v, int) and v > 0:
                return v
            c = getattr(mod, "config", None)
            v = getattr(c, nm, None) if c is not None else None
            if isinstance(v, int) and v > 0:
                return v
        return None

    def bias(path: str) -> list[Any]:
        m = mods.get(path)
        return [path + ".bias"] if m is not None and getattr(m, "bias", None) is not None else []

    for path, mod in mods.items():
        p = f"{path}." if path else ""
        if isinstance(mod, nn.MultiheadAttention) and mod._qkv_same_embed_dim:
            H, hd = mod.num_heads, mod.head_dim
            w = [Member(f"{p}in_proj_weight", 0, block=hd, segments=3)]
            if mod.in_proj_bias is not None:
                w.append(Member(f"{p}in_proj_bias", 0, block=hd, segments=3))
            out.append(_head(path, H, hd, w, [Member(f"{p}out_proj.weight", 1, block=hd)], "q/k/v"))
            continue
        names = set(dict(mod.named_children()))
        qkvo = next((t for t in _QKVO if set(t) <= names), None)
        if qkvo is not None:
            qn, kn, vn, on = qkvo
            q, k, v, o = (mods[p + s] for s in qkvo)
            if not all(isinstance(m, nn.Linear) for m in (q, k, v, o)):
                continue
            hd = cfg_int(mod, "head_dim", "attention_head_size")
            H = cfg_int(mod, "num_heads", "num_attention_heads", "n_heads")
            if hd is None and H:
                hd = q.out_features // H
            if not hd or q.out_features % hd or k.out_features % hd:
                continue
            H, G = q.out_features // hd, k.out_features // hd
            if H % G:
                continue
            r = H // G
            qb = [Member(f"{p}{qn}.weight", 0, block=hd * r)] + [Member(b, 0, block=hd * r) for b in bias(p + qn)]
            kv = [Member(f"{p}{s}.weight", 0, block=hd) for s in (kn, vn)]
            kv += [Member(b, 0, block=hd) for s in (kn, vn) for b in bias(p + s)]
            if G == 1 or G == H:  # one key/value head for all (multi-query), or plain multi-head
                shared = []
                if G == 1:  # the single key/value head is shared by every query head: it stays
                    qb = [Member(f"{p}{qn}.weight", 0, block=hd)] + [Member(b, 0, block=hd) for b in bias(p + qn)]
                    shared = [f"{p}{s}.weight" for s in (kn, vn)]
                    kv = []
                out.append(_head(path, H, hd, qb + kv, [Member(f"{p}{on}.weight", 1, block=hd)], "q/k/v"))
                out[-1]["explains"] = shared
                continue
            out.append(_head(path, G, hd, qb + kv, [Member(f"{p}{on}.weight", 1, block=hd * r)],
                             "key/value group", name=f"{path}.kv_groups", kind="key/value head group",
                             note=f"grouped-query attention: {G} key/value heads, each shared by {r} query "
                             "heads; the groups permute (k/v rows and their query heads move together)"))
            for g in range(G):
                w = [Member(f"{p}{qn}.weight", 0, block=hd, offset=g * r * hd)]
                w += [Member(b, 0, block=hd, offset=g * r * hd) for b in bias(p + qn)]
                out.append(_head(path, r, hd, w, [Member(f"{p}{on}.weight", 1, block=hd, offset=g * r * hd)],
                                 "query heads", name=f"{path}.heads.g{g}", kind="attention head",
                                 note=f"the {r} query heads sharing key/value head {g} permute among themselves"))
            continue
        fused = _fused_qkv_heads(mod, path, p, names, mods, cfg_int, bias)
        if fused is not None:
            out += fused
            continue
        trio = next((t for t in (("query", "key", "value"), ("query_proj", "key_proj", "value_proj")) if set(t) <= names),
                    None)
        if trio is not None:
            # BERT/ViT/ALBERT ``query/key/value``; DeBERTa-v2's ``query_proj/key_proj/value_proj``
            # (its relative-position embeddings go through the same projections, or through
            # ``pos_key_proj``/``pos_query_proj``, whose rows move with the heads too)
            q = mods[p + trio[0]]
            H = cfg_int(mod, "num_attention_heads", "num_heads")
            hd = cfg_int(mod, "attention_head_size", "head_dim") or (q.out_features // H if H else None)
            parent, _, _ = path.rpartition(".")
            # the output projection: BERT/ViT's sibling ``output.dense``, ALBERT's own ``dense``
            opath = f"{parent}.output.dense" if parent and isinstance(mods.get(f"{parent}.output.dense"), nn.Linear) \
                else f"{p}dense"
            o = mods.get(opath)
            if not (H and hd and isinstance(o, nn.Linear) and all(isinstance(mods[p + s], nn.Linear) for s in trio)):
                continue
            srcs = list(trio) + [s for s in ("pos_key_proj", "pos_query_proj")
                                 if isinstance(mods.get(p + s), nn.Linear) and mods[p + s].out_features == H * hd]
            w = [Member(f"{p}{s}.weight", 0, block=hd) for s in srcs]
            w += [Member(b, 0, block=hd) for s in srcs for b in bias(p + s)]
            out.append(_head(path, H, hd, w, [Member(f"{opath}.weight", 1, block=hd)], "q/k/v"))
            continue
        if {"c_attn", "c_proj"} <= names and _is_conv1d_hf(mods[p + "c_attn"]):
            H = cfg_int(mod, "num_heads", "n_head")
            hd = cfg_int(mod, "head_dim")
            if not (H and hd) or getattr(mod, "is_cross_attention", False):
                continue
            w = [Member(f"{p}c_attn.weight", 1, block=hd, segments=3)] + [Member(b, 0, block=hd, segments=3) for b in bias(p + "c_attn")]
            out.append(_head(path, H, hd, w, [Member(f"{p}c_proj.weight", 0, block=hd)], "q/k/v"))
            continue
        levit = _levit_heads(mod, p, mods, names)
        if levit is not None:
            out.append(levit)
            continue
        if {"q", "kv", "proj"} <= names and all(isinstance(mods[p + c], nn.Linear) for c in ("q", "kv", "proj")):
            # PVT-v2 / SegFormer-style: queries from q, keys and values from kv (C → 2C: all keys,
            # then all values) over spatially reduced tokens, output through proj
            q, kv, proj = mods[p + "q"], mods[p + "kv"], mods[p + "proj"]
            H = cfg_int(mod, "num_heads")
            if not H or q.out_features % H or kv.out_features != 2 * q.out_features \
                    or proj.in_features != q.out_features:
                continue
            hd = q.out_features // H
            w = [Member(f"{p}q.weight", 0, block=hd)] + [Member(b, 0, block=hd) for b in bias(p + "q")]
            w += [Member(f"{p}kv.weight", 0, block=hd, segments=2)] + [Member(b, 0, block=hd, segments=2)
                                                                       for b in bias(p + "kv")]
            out.append(_head(path, H, hd, w, [Member(f"{p}proj.weight", 1, block=hd)], "q and k/v"))
            continue
        if {"qkv", "proj"} <= names and isinstance(mods[p + "qkv"], nn.Linear) and isinstance(mods[p + "proj"], nn.Linear):
            qkv, proj = mods[p + "qkv"], mods[p + "proj"]
            H = cfg_int(mod, "num_heads")
            if not H or qkv.out_features % H or proj.in_features % H:
                continue
            # parameters of the attention module indexed by head first (EfficientFormer's
            # attention_biases (H, N)) move with their head
            per_head = _per_head_members(mod, p, H, exclude=("qkv", "proj"))
            ob = proj.in_features // H
            layouts = []
            hd = cfg_int(mod, "head_dim") or qkv.out_features // 3 // H
            if qkv.out_features == 3 * H * hd:  # timm ViT: all queries, then all keys, then values
                w = [Member(f"{p}qkv.weight", 0, block=hd, segments=3)]
                w += [Member(b, 0, block=hd, segments=3) for b in bias(p + "qkv")]
                # BEiT/EVA's separate q_bias and v_bias, EVA's norm over the heads' outputs
                w += _head_dim_members(mod, p, H, hd, exclude=("qkv", "proj"))
                layouts.append((w, "q/k/v"))
            blk = qkv.out_features // H  # per head, its q, k and v rows together (EfficientFormer)
            w = [Member(f"{p}qkv.weight", 0, block=blk)] + [Member(b, 0, block=blk) for b in bias(p + "qkv")]
            layouts.append((w, "per-head interleaved q/k/v"))
            first = _head(path, H, hd if layouts[0][1] == "q/k/v" else blk, layouts[0][0] + per_head,
                          [Member(f"{p}proj.weight", 1, block=ob)], layouts[0][1])
            first["alternatives"] = [_head(path, H, blk, w2 + per_head, [Member(f"{p}proj.weight", 1, block=ob)], what)
                                     for w2, what in layouts[1:]]
            out.append(first)
    return _join_position_bias_heads(out, mods)


def _join_position_bias_heads(heads: list[dict[str, Any]], mods: dict[str, nn.Module]) -> list[dict[str, Any]]:
    """T5: the first self-attention of a stack owns ``relative_attention_bias`` (an Embedding of
    buckets × H) and its output — one bias per head — is added to the scores of *every* layer's
    self-attention in the stack. Head h of every layer reads column h of that one table, so the
    heads of all these layers move by one permutation, with the table's columns: one joint axis
    of H! for the stack, instead of one per layer (each of which fails alone)."""
    from netxray.capture.structure._parts import Member

    for path, mod in mods.items():
        emb = getattr(mod, "relative_attention_bias", None)
        if not (isinstance(emb, nn.Embedding) and getattr(mod, "has_relative_attention_bias", False)
                and ".block." in path):
            continue
        stack, rest = path.split(".block.", 1)
        role = rest.split(".", 1)[1] if "." in rest else ""
        group = [h for h in heads if h["name"] == f"{h['layer']}.heads" and h["layer"].startswith(stack + ".block.")
                 and h["layer"].split(".block.", 1)[1].split(".", 1)[-1] == role and h["size"] == emb.embedding_dim]
        if not any(h["layer"] == path for h in group):
            continue
        hd = group[0]["head_dim"]
        joint = _head(f"{stack}.block", emb.embedding_dim, hd,
                      [m for h in group for m in h["writers"]] + [Member(f"{path}.relative_attention_bias.weight", 1)],
                      [m for h in group for m in h["readers"]], "q/k/v", name=f"{stack}.block.*.{role}.heads",
                      note=f"the {emb.embedding_dim} heads of all {len(group)} layers' {role} move together with the "
                      f"columns of {path}.relative_attention_bias, the one per-head position bias they all add "
                      "(the per-head GL(d_head) symmetries are not counted)")
        heads = [h for h in heads if not any(h is g for g in group)] + [joint]
    return heads


def expert_axes(model: nn.Module) -> list[dict[str, Any]]:
    """Axes of mixture-of-experts blocks whose experts are stacked in tensors with a leading
    expert dimension (Hugging Face Mixtral/Qwen-MoE style ``experts.gate_up_proj`` (E, 2F, d),
    ``experts.down_proj`` (E, d, F), optional biases) next to a router whose weight is (E, d):

    - the experts permute with the router's rows (E!): the same tokens reach the same (moved)
      expert with the same weight;
    - inside each expert, its F hidden units permute (its gate and up rows, its down columns):
      one grouped axis of E groups, (F!)^E. A gated layout is tried as [gate; up] halves first,
      then interleaved (gate, up) pairs; the verification keeps the one that holds and checks
      that the probe reaches every expert (an expert no probe token is routed to would pass
      vacuously: then the axis is rejected and says so).

    Read from the module tree (the routing itself — top-k, sorting tokens by expert, grouped
    matmuls — is no op the graph follows). Each entry as :func:`head_axes`'."""
    from netxray.capture.structure._parts import Member

    out: list[dict[str, Any]] = []
    for path, mod in model.named_modules():
        experts = getattr(mod, "experts", None)
        if not isinstance(experts, nn.Module) or isinstance(experts, (nn.ModuleList, nn.ModuleDict)):
            continue
        p = f"{path}." if path else ""
        stacked = {n: t for n, t in experts.named_parameters(recurse=False)}
        router = next(((n, c) for n, c in mod.named_children() if n != "experts"
                       and isinstance(getattr(c, "weight", None), torch.Tensor) and c.weight.ndim == 2), None)
        if router is None or "gate_up_proj" not in stacked or "down_proj" not in stacked:
            continue
        E, d = router[1].weight.shape
        gu, dn = stacked["gate_up_proj"], stacked["down_proj"]
        if gu.ndim != 3 or dn.ndim != 3 or gu.shape[0] != E or dn.shape[0] != E:
            continue
        F = next((s for s in dn.shape[1:] if s != d), None)
        if F is None or 2 * F not in gu.shape[1:] or d not in gu.shape[1:]:
            continue
        gdim = list(gu.shape).index(2 * F, 1)
        ddim = 1 + [i for i, s in enumerate(dn.shape[1:]) if s == F][0]
        rkey = f"{p}{router[0]}.weight"
        keys = [f"{p}experts.{n}" for n in stacked]
        ex = [Member(rkey, 0)] + [Member(k, 0) for k in keys]
        if getattr(router[1], "bias", None) is not None:
            ex.append(Member(f"{p}{router[0]}.bias", 0))
        out.append({"name": f"{path}.experts", "layer": path, "size": E, "writers": ex, "readers": [],
                    "kind": "expert", "head_dim": 0, "groups": 1, "explains": [rkey],
                    "note": f"{E} experts permute with the router's rows ({rkey}): every stacked expert tensor "
                    "moves along its expert dimension"})

        layouts = []  # [gate; up] halves (Mixtral), then interleaved (gate, up) pairs
        for segments, block in ((2, 1), (1, 2)):
            w = [Member(f"{p}experts.gate_up_proj", gdim, block=block, segments=segments, groups=E, row_dim=0),
                 Member(f"{p}experts.down_proj", ddim, groups=E, row_dim=0)]
            if "gate_up_proj_bias" in stacked and tuple(stacked["gate_up_proj_bias"].shape) == (E, 2 * F):
                w.append(Member(f"{p}experts.gate_up_proj_bias", 1, block=block, segments=segments, groups=E,
                                row_dim=0))
            layouts.append(w)
        note = (f"inside each of the {E} experts, its {F} hidden units permute (its gate and up rows, its "
                f"down-projection columns): ({F}!)^{E}")
        first = {"name": f"{path}.experts.hidden", "layer": path, "size": E * F, "writers": layouts[0],
                 "readers": [], "kind": "expert hidden unit", "head_dim": 0, "groups": E, "note": note,
                 "reach": (f"{p}experts.gate_up_proj", E)}
        first["alternatives"] = [dict(first, writers=layouts[1], note=note + " (gate and up rows interleaved)")]
        out.append(first)
    return out


# (query, key, value, output) projection names: Llama/Mistral/Qwen…, DistilBERT, T5, diffusers,
# OPT/CLIP/BART/Whisper
_QKVO = (("q_proj", "k_proj", "v_proj", "o_proj"), ("q_lin", "k_lin", "v_lin", "out_lin"),
         ("q", "k", "v", "o"), ("to_q", "to_k", "to_v", "to_out"), ("q_proj", "k_proj", "v_proj", "out_proj"))


def _fused_qkv_heads(mod: nn.Module, path: str, p: str, names: set[str], mods: dict[str, nn.Module],
                     cfg_int: Callable[..., int | None], bias: Callable[[str], list[Any]]) -> list[dict[str, Any]] | None:
    """Heads of attention modules whose queries, keys and values come from one fused Linear:

    - ``query_key_value`` + ``dense`` (GPT-NeoX, Bloom): the output is viewed as (…, H, 3·d_head),
      each head's q, k and v rows in one contiguous block of 3·d_head rows; the dense layer's
      column blocks of d_head move with them (Bloom's ALiBi slopes are fixed per head position,
      so its heads are no symmetry: the verification rejects them, and that is the answer);
    - ``qkv_proj`` + ``o_proj`` (Phi-3): H·d query rows, then G·d key rows, then G·d value rows
      (grouped-query attention: one axis for the key/value groups with their query heads, one
      per group for the query heads sharing it, as for Llama's separate projections).

    None when the module is not one of these layouts."""
    from netxray.capture.structure._parts import Member

    if {"query_key_value", "dense"} <= names:
        qkv, o = mods[p + "query_key_value"], mods[p + "dense"]
        if not (isinstance(qkv, nn.Linear) and isinstance(o, nn.Linear)):
            return None
        H = cfg_int(mod, "num_attention_heads", "num_heads", "n_head")
        if not H or qkv.out_features % (3 * H):
            return None
        hd = cfg_int(mod, "head_size", "head_dim") or qkv.out_features // (3 * H)
        if qkv.out_features != 3 * H * hd or o.in_features != H * hd:
            return None
        w = [Member(f"{p}query_key_value.weight", 0, block=3 * hd)]
        w += [Member(b, 0, block=3 * hd) for b in bias(p + "query_key_value")]
        return [_head(path, H, hd, w, [Member(f"{p}dense.weight", 1, block=hd)], "per-head interleaved q/k/v")]
    if {"qkv_proj", "o_proj"} <= names:
        qkv, o = mods[p + "qkv_proj"], mods[p + "o_proj"]
        if not (isinstance(qkv, nn.Linear) and isinstance(o, nn.Linear)):
            return None
        H = cfg_int(mod, "num_attention_heads", "num_heads")
        G = cfg_int(mod, "num_key_value_heads") or H
        hd = cfg_int(mod, "head_dim") or (o.in_features // H if H else None)
        if not (H and G and hd) or H % G or qkv.out_features != (H + 2 * G) * hd or o.in_features != H * hd:
            return None
        r = H // G
        key, bkeys = f"{p}qkv_proj.weight", bias(p + "qkv_proj")
        if G == H or G == 1:
            blk = hd
            w = [Member(k, 0, block=blk) for k in [key, *bkeys]]
            if G == H:
                w += [Member(k, 0, block=hd, offset=off) for k in [key, *bkeys] for off in (H * hd, 2 * H * hd)]
            head = _head(path, H, hd, w, [Member(f"{p}o_proj.weight", 1, block=hd)], "fused q/k/v")
            return [head]
        groups = [Member(k, 0, block=hd * r) for k in [key, *bkeys]]
        groups += [Member(k, 0, block=hd, offset=off) for k in [key, *bkeys] for off in (H * hd, (H + G) * hd)]
        out = [_head(path, G, hd, groups, [Member(f"{p}o_proj.weight", 1, block=hd * r)], "key/value group",
                     name=f"{path}.kv_groups", kind="key/value head group",
                     note=f"grouped-query attention in one fused qkv projection: {G} key/value heads, each shared "
                     f"by {r} query heads; the groups permute (k/v rows and their query heads move together)")]
        for g in range(G):
            w = [Member(k, 0, block=hd, offset=g * r * hd) for k in [key, *bkeys]]
            out.append(_head(path, r, hd, w, [Member(f"{p}o_proj.weight", 1, block=hd, offset=g * r * hd)],
                             "query heads", name=f"{path}.heads.g{g}", kind="attention head",
                             note=f"the {r} query heads sharing key/value head {g} permute among themselves"))
        return out
    return None


def _linear_norm(path: str, mods: dict[str, nn.Module]) -> tuple[str, str | None] | None:
    """(Linear path, BatchNorm path or None) of a projection that is a Linear, a Linear followed
    by a BatchNorm (timm LeViT's LinearNorm: ``.linear``, ``.bn``) or a Sequential ending in one
    after parameter-free modules (LeViT's ``proj = (act, ln)``, ``q = (subsample, ln)``)."""
    m = mods.get(path)
    if isinstance(m, nn.Linear):
        return path, None
    if m is None:
        return None
    kids = dict(m.named_children())
    if isinstance(kids.get("linear"), nn.Linear) and isinstance(kids.get("bn"), nn.modules.batchnorm._BatchNorm) \
            and len(kids) == 2:
        return f"{path}.linear", f"{path}.bn"
    if isinstance(m, nn.Sequential) and kids:
        *rest, last = list(kids)
        if all(not any(True for _ in kids[r].parameters()) for r in rest):
            return _linear_norm(f"{path}.{last}", mods)
    return None


def _levit_heads(mod: nn.Module, p: str, mods: dict[str, nn.Module], names: set[str]) -> dict[str, Any] | None:
    """Heads of an attention whose projections write one contiguous row block per head (timm
    LeViT: ``qkv(x).view(B, N, H, -1).split([key_dim, key_dim, val_dim])``, and its downsampling
    attention with separate ``kv`` and ``q``), each projection a Linear optionally followed by a
    BatchNorm over its outputs: the head's rows, BN parameters and running statistics, its
    attention biases (H, N) and its ``val_dim`` columns of the output projection move together."""
    from netxray.capture.structure._parts import Member

    H, kd, vd = (getattr(mod, a, None) for a in ("num_heads", "key_dim", "val_dim"))
    if not all(isinstance(v, int) and v > 0 for v in (H, kd, vd)) or "proj" not in names:
        return None
    srcs = ["qkv"] if "qkv" in names else (["kv", "q"] if {"kv", "q"} <= names else None)
    if srcs is None:
        return None
    writers: list[Any] = []
    for src in srcs:
        ln = _linear_norm(p + src, mods)
        if ln is None or mods[ln[0]].out_features % H:
            return None
        blk = mods[ln[0]].out_features // H
        writers.append(Member(f"{ln[0]}.weight", 0, block=blk))
        if mods[ln[0]].bias is not None:
            writers.append(Member(f"{ln[0]}.bias", 0, block=blk))
        if ln[1] is not None:
            writers += [Member(f"{ln[1]}.{t}", 0, block=blk) for t in ("weight", "bias", "running_mean", "running_var")
                        if getattr(mods[ln[1]], t, None) is not None]
    pr = _linear_norm(p + "proj", mods)
    if pr is None or mods[pr[0]].in_features != H * vd:
        return None
    writers += _per_head_members(mod, p, H, exclude=(*srcs, "proj"))
    path = p[:-1]
    return _head(path, H, vd, writers, [Member(f"{pr[0]}.weight", 1, block=vd)], "per-head q/k/v (LeViT)")


def _head_dim_members(mod: nn.Module, p: str, H: int, hd: int, exclude: tuple[str, ...]) -> list[Any]:
    """Parameters of an attention module laid out along the H·d_head features of its heads,
    which move with their head in blocks of d_head: timm BEiT/EVA's ``q_bias`` and ``v_bias``
    (the qkv Linear has no bias of its own: ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))``),
    a 3·H·d_head packed bias (three segments), EVA's LayerNorm over the concatenated heads'
    outputs (``attn.norm``) and the rows of a Linear that writes those features (a gate). Left
    out, such a tensor makes a head axis that holds only while it is zero (BEiT at init): the
    verification on random values rejects that. A wrong guess fails verification too."""
    from netxray.capture.structure._parts import Member

    out = []
    if hd < 2:
        return out
    for n, t in mod.named_parameters():
        if n.split(".")[0] in exclude or t.ndim < 1:
            continue
        if t.shape[0] == H * hd:
            out.append(Member(f"{p}{n}", 0, block=hd))
        elif t.shape[0] == 3 * H * hd:
            out.append(Member(f"{p}{n}", 0, block=hd, segments=3))
    return out


def _per_head_members(mod: nn.Module, p: str, H: int, exclude: tuple[str, ...]) -> list[Any]:
    """Parameters of an attention module indexed by head, which move with their head: a direct
    parameter with exactly one axis of length H (EfficientFormer's ``attention_biases`` (H, N),
    Swin's ``relative_position_bias_table`` (N, H), Swin V2's ``logit_scale`` (H, 1, 1)), and the
    rows of a Linear inside it that outputs one value per head (Swin V2's position-bias MLP).
    A wrong guess fails verification, and the layout without it is not claimed."""
    from netxray.capture.structure._parts import Member

    out = []
    for n, t in mod.named_parameters(recurse=False):
        dims = [d for d, k in enumerate(t.shape) if k == H]
        if len(dims) == 1 and t.ndim >= 1:
            out.append(Member(f"{p}{n}", dims[0]))
    for n, sub in mod.named_modules():
        if n and n.split(".")[0] not in exclude and isinstance(sub, nn.Linear) and sub.out_features == H:
            out.append(Member(f"{p}{n}.weight", 0))
            if sub.bias is not None:
                out.append(Member(f"{p}{n}.bias", 0))
    return out


def _head(path: str, size: int, hd: int, writers: list[Any], readers: list[Any], what: str, *,
          name: str | None = None, kind: str = "attention head", note: str | None = None) -> dict[str, Any]:
    return {
        "name": name or f"{path}.heads", "layer": path, "size": size, "writers": writers,
        "readers": readers, "kind": kind, "head_dim": hd,
        "note": note or f"{size} heads of {hd} dims: {what} row blocks and output-projection column "
        "blocks move together (the per-head GL(d_head) symmetries are not counted)",
    }

"""Which route to an OpenVINO IR: ``openvino.convert_model`` of the torch module (a TorchScript
trace), of a ``torch.export`` program, or of our ONNX export. A ViT-L-width PUP (1024 wide, 16
heads) with DEPTH blocks (default 2) at 768, batch 1, 2 threads:

    python benchmarks/ov_routes.py 2

Prints each route's conversion time, whether the IR holds fused attention (the IR's
``ScaledDotProductAttention`` ops and the CPU plugin's runtime layer types), its error against eager
at 768 and at an unseen 512x640, fp32 and bf16 latencies (runs interleaved, so drift hits every
route alike), and a dynamic against a static compile of the torch.export IR in bf16."""

import json
import statistics
import sys
import time

import numpy as np
import openvino as ov
import torch

import setr
from setr.export import export_model
from setr.export.exporter import _dynamic_shapes

depth = int(sys.argv[1]) if len(sys.argv) > 1 else 2
repeats = 5
torch.manual_seed(0)
torch.set_num_threads(2)
model = setr.SETR(
    head="pup",
    img_size=768,
    num_classes=19,
    embed_dim=1024,
    num_heads=16,
    depth=depth,
    decode_index=depth - 1,
    aux_indices=[],
).eval()
x = torch.randn(1, 3, 768, 768)
other = torch.randn(1, 3, 512, 640)
with torch.no_grad():
    ref, ref_other = model(x).numpy(), model(other).numpy()
res = {}
models = {}
t = time.time()
models["torch-module"] = ov.convert_model(model, example_input=x, input=[ov.PartialShape([-1, 3, -1, -1])])
res["convert torch-module s"] = time.time() - t
t = time.time()
ep = torch.export.export(model, (torch.randn(2, 3, 768, 768),), dynamic_shapes=_dynamic_shapes(model))
res["torch.export s"] = time.time() - t
t = time.time()
models["torch.export"] = ov.convert_model(ep)
res["convert torch.export s"] = time.time() - t
t = time.time()
export_model(model, "/tmp/setr-ov-routes.onnx", "onnx", dynamic=True, size=(768, 768), force=True)
res["onnx export s"] = time.time() - t
t = time.time()
models["onnx"] = ov.convert_model("/tmp/setr-ov-routes.onnx")
res["convert onnx s"] = time.time() - t
print(json.dumps(res), flush=True)
core = ov.Core()


def kinds(ops, runtime):
    out = {}
    for op in ops:
        k = op.get_rt_info()["layerType"].astype(str) if runtime else op.get_type_name()
        out[k] = out.get(k, 0) + 1
    return out


compiled = {}
for name, m in models.items():
    ir = kinds(m.get_ordered_ops(), False)
    print(
        name,
        "IR SDPA ops:",
        ir.get("ScaledDotProductAttention", 0),
        "Softmax:",
        ir.get("Softmax", 0),
        "MatMul:",
        ir.get("MatMul", 0),
        flush=True,
    )
    for prec in ("f32", "bf16"):
        c = core.compile_model(
            m, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
        )
        rt = kinds(c.get_runtime_model().get_ordered_ops(), True)
        if prec == "bf16":
            print(name, "runtime layer types:", json.dumps(dict(sorted(rt.items(), key=lambda kv: -kv[1]))), flush=True)
        req = c.create_infer_request()
        try:
            o = req.infer({0: other.numpy()})[0]
            err_other = float(np.linalg.norm(o - ref_other) / np.linalg.norm(ref_other))
        except RuntimeError as e:
            err_other = float("nan")
            print(name, prec, "fails at 512x640:", str(e).splitlines()[-2][:150], flush=True)
        compiled[(name, prec)] = (req, err_other)
times = {k: [] for k in compiled}
for req, _ in compiled.values():
    req.infer({0: x.numpy()})
for _ in range(repeats):  # interleaved: drift hits every path alike
    for k, (req, _) in compiled.items():
        t = time.time()
        out = req.infer({0: x.numpy()})[0]
        times[k].append(time.time() - t)
        times.setdefault(("err",) + k, float(np.linalg.norm(out - ref) / np.linalg.norm(ref)))
for k, (_req, err_other) in compiled.items():
    print(
        f"{k[0]:14s} {k[1]:5s} median {statistics.median(times[k]):.3f} s  min {min(times[k]):.3f}  rel L2 @768 {times[('err',) + k]:.2e}  @512x640 {err_other:.2e}",
        flush=True,
    )
# static vs dynamic compile of the torch.export model, bf16
m = models["torch.export"]
s = m.clone()
s.reshape({0: [1, 3, 768, 768]})
cs = core.compile_model(
    s, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
)
rs = cs.create_infer_request()
rs.infer({0: x.numpy()})
rd = compiled[("torch.export", "bf16")][0]
td, ts = [], []
for _ in range(repeats):
    t = time.time()
    rd.infer({0: x.numpy()})
    td.append(time.time() - t)
    t = time.time()
    rs.infer({0: x.numpy()})
    ts.append(time.time() - t)
print(f"torch.export bf16 dynamic {statistics.median(td):.3f} s vs static {statistics.median(ts):.3f} s", flush=True)

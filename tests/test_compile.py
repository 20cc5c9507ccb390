"""torch.compile of every Rep3D variant, as stock nnU-Net compiles it on CUDA, run here on the CPU.

- the depthwise conv is one registered op (``rep3d::dwconv3d``): ``torch.library.opcheck``,
  float64 ``gradcheck``, ``torch.export`` and ``FlopCounterMode`` on the meta device;
- every variant's training form (deep supervision on, built from plans as nnU-Net's
  trainer builds it) and deploy form trace with 0 graph breaks (``torch._dynamo.explain``);
- ``torch.compile`` (inductor) forward + backward equals eager for every variant;
- a compiled bf16-autocast training step; nnU-Net's own ``initialize()`` with compile on.

Cost: every compiled graph costs inductor a C++ build on a cold cache (about 2-3 CPU-minutes
for the file; seconds once inductor's on-disk cache is warm). Shapes are tiny, compiled
artefacts are shared by module-scoped fixtures, and inductor emits scalar C++ (the CPU
codegen's vectorisation is not what is tested here: users compile on CUDA).
"""
from __future__ import annotations

import copy
from typing import Dict, List

import pytest
import torch
import torch._dynamo
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from rep3d_nnunet.conv import DepthwiseConv3d
from rep3d_nnunet.nnunet import forms
from rep3d_nnunet.nnunet import trainers as T
from rep3d_nnunet.nnunet.architecture import Rep3DVariant
from rep3d_nnunet.nnunet.templates import merged_plans
from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.ops.dispatch import dwconv_path
from test_nnunet_plans import RESENC_ARCH, plans_with

TRAINERS = {"lrbm": T.nnUNetTrainerRep3D, "prior": T.nnUNetTrainerRep3DFixedPrior,
            "plain": T.nnUNetTrainerRep3DPlainLK, "csla": T.nnUNetTrainerRep3DCSLA,
            "uxnet": T.nnUNetTrainerUXNet, "uxnet_lrbm": T.nnUNetTrainerUXNetLRBM}
PATCH = (8, 16, 16)
N_CLASSES = 3
DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 4,
                "file_ending": ".nii.gz"}
# 15^3 kernels (clipped to 2 x feature map - 1): the measured rule puts the full-resolution
# stage (8x16x16) on the FFT path when training and the smaller stages on the direct path, so
# both paths compile. UX-Net trainers cap the kernels at 7^3 (direct path only).
PLANS_VARIANT = Rep3DVariant(large_kernel_size=15, small_kernel_size=15, n_blocks_per_stage=1, stem_kernel_size=3)
OP = torch.ops.rep3d.dwconv3d.default


def _small_plans() -> dict:
    arch = copy.deepcopy(RESENC_ARCH)
    arch["arch_kwargs"].update(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=[[3, 3, 3]] * 3,
                               strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]], n_blocks_per_stage=[1, 1, 1],
                               n_conv_per_stage_decoder=[1, 1])
    plans = plans_with(arch)
    plans["configurations"]["3d_fullres"]["patch_size"] = list(PATCH)
    return merged_plans(plans, PLANS_VARIANT, "nnUNetRep3DPlans")


PLANS = _small_plans()


def _network(variant: str, form: str = "training", deep_supervision: bool = True) -> torch.nn.Module:
    """The network nnU-Net's trainer (training form) or predictor (deploy form) builds for ``variant``."""
    pm = PlansManager(copy.deepcopy(PLANS))
    return forms.build_network(TRAINERS[variant], pm, pm.get_configuration("3d_fullres"), 1, N_CLASSES, form=form,
                               deep_supervision=deep_supervision)


def _loss(outputs) -> torch.Tensor:
    """A deep-supervision-style scalar of every output (weights halve per scale)."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return sum(o.float().square().mean() * 0.5 ** i for i, o in enumerate(outputs))


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


class _RecordPaths(TorchDispatchMode):
    """The path argument of every ``rep3d::dwconv3d`` call in eager mode."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is OP:
            self.paths.append(args[3])
        return func(*args, **(kwargs or {}))


def _graph_paths(graph_module: torch.fx.GraphModule) -> List[str]:
    """The path argument of every ``rep3d.dwconv3d`` node of a dynamo graph, in graph order."""
    return [n.args[3] for n in graph_module.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("rep3d.dwconv3d")]


@pytest.fixture(scope="module", autouse=True)
def _compile_settings():
    # Many networks of one class compile in this module: allow their recompiles. Scalar C++
    # kernels build about twice as fast as vectorised ones on a cold cache.
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=64), inductor_config.patch({"cpp.vec_isa_ok": False}):
        yield
    torch._dynamo.reset()


# ---- the op ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ("fft", "direct"))
def test_op_passes_opcheck_and_float64_gradcheck(path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 1, 3, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    # schema, fake kernel vs real kernel, autograd registration, AOT dispatch (static and dynamic shapes)
    for args in ((x, w, b, path), (x, w, None, path), (x.detach(), w, b, path), (x.float(), w.float(), None, path)):
        torch.library.opcheck(torch.ops.rep3d.dwconv3d, args)
    # fast_mode: a random projection of the Jacobian against finite differences, in a few evaluations
    assert torch.autograd.gradcheck(lambda *a: torch.ops.rep3d.dwconv3d(*a, path)[0], (x, w, b), fast_mode=True)


def test_op_is_one_node_for_torch_export_and_counts_as_a_convolution_on_meta():
    block = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 1), DepthwiseConv3d(4, 5, bias=True), torch.nn.GELU()).eval()
    x = torch.randn(1, 2, 6, 7, 8)
    exported = torch.export.export(block, (x,))
    assert _graph_paths(exported.graph_module) == ["direct"]  # inference at this size: the direct path
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), block(x), rtol=1e-5, atol=1e-6)

    def flops(path):
        with torch.device("meta"):
            net = _network("lrbm", "deploy", deep_supervision=False).eval()
            xm = torch.zeros(1, 1, *PATCH)
        with torch.no_grad(), dwconv_path(path), FlopCounterMode(display=False) as counter:
            net(xm)
        return counter.get_total_flops()

    # resources.py counts with the torch path (aten convolutions); the op counts the same convolution
    assert flops("torch") == flops(None) > 0


def test_path_is_fixed_when_traced():
    """REP3D_DWCONV / dwconv_path reach a compiled model when it is traced, not later (no guard on them)."""
    graphs: List[torch.fx.GraphModule] = []

    def keep_graph(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    x = torch.randn(1, 2, 6, 6, 6)
    w = torch.randn(2, 1, 3, 3, 3)
    fn = torch.compile(lambda a, b: dwconv3d(a, b), backend=keep_graph, fullgraph=True)
    with dwconv_path("fft"):
        y_fft = fn(x, w)
    with dwconv_path("torch"):
        y_later = fn(x, w)  # no recompile: the graph traced with the FFT path runs
    assert len(graphs) == 1 and _graph_paths(graphs[0]) == ["fft"]
    assert torch.allclose(y_fft, y_later, atol=1e-5)
    torch._dynamo.reset()  # what a change needs to take effect
    with dwconv_path("torch"):
        fn(x, w)
    assert len(graphs) == 2 and _graph_paths(graphs[1]) == []  # traced again: plain F.conv3d


# ---- zero graph breaks ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(TRAINERS))
@pytest.mark.parametrize("form", ("training", "deploy"))
def test_no_graph_breaks(variant, form):
    net = _network(variant, form, deep_supervision=form == "training")
    net.train(form == "training")
    x = torch.randn(2, 1, *PATCH)
    with torch.set_grad_enabled(form == "training"), _RecordPaths() as rec:
        net(x)
    with torch.set_grad_enabled(form == "training"):
        explained = torch._dynamo.explain(net)(x)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1
    # each depthwise conv is one opaque node holding the path eager mode chose
    assert _graph_paths(explained.graphs[0]) == rec.paths
    if form == "training" and variant in ("lrbm", "prior", "plain"):
        assert "fft" in rec.paths and "direct" in rec.paths


# ---- compiled == eager ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(TRAINERS))
def compiled_vs_eager(request) -> Dict:
    """One forward + backward of a variant's training form, eager and ``torch.compile``d, in float64.

    float64 makes "equal" testable for every gradient: in float32 the gradients that vanish
    in exact arithmetic (a conv bias right before InstanceNorm) are pure rounding noise.
    """
    torch.manual_seed(0)
    net = _network(request.param).double()
    with torch.no_grad():  # off the initialisation, where the LRBM generator's first layers get zero gradients
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    eager = copy.deepcopy(net)
    x = torch.randn(2, 1, *PATCH, dtype=torch.float64)
    compiled = torch.compile(net, fullgraph=True)  # fullgraph: a graph break would be an error
    out_c = compiled(x)
    _loss(out_c).backward()
    out_e = eager(x)
    _loss(out_e).backward()
    return {"outputs": (out_c, out_e),
            "grads": {n: (p.grad, dict(eager.named_parameters())[n].grad) for n, p in net.named_parameters()}}


def test_compiled_outputs_equal_eager(compiled_vs_eager):
    out_c, out_e = compiled_vs_eager["outputs"]
    assert isinstance(out_c, list) and len(out_c) == len(out_e) == 2  # deep supervision
    for a, b in zip(out_c, out_e):
        assert a.shape == b.shape and _rel(a, b) < 1e-4


def test_compiled_gradients_equal_eager(compiled_vs_eager):
    grads = compiled_vs_eager["grads"]
    assert all(gc is not None and ge is not None for gc, ge in grads.values())
    scale = max(ge.abs().max().item() for _, ge in grads.values())
    for name, (gc, ge) in grads.items():
        # relative to the parameter's own gradient; floor 1e-9 of the largest gradient for the ones that
        # vanish in exact arithmetic (they are ~1e-17 of it here; float64 rounding)
        err = (gc - ge).abs().max().item()
        assert err <= 1e-4 * max(ge.abs().max().item(), 1e-9 * scale), f"{name}: max error {err:.2e}"


@pytest.mark.parametrize("variant", ("lrbm", "uxnet"))  # the two deploy-form structures of the six variants
def test_compiled_deploy_form_equals_eager(variant):
    training = _network(variant).eval()
    deployed = _network(variant, "deploy", deep_supervision=False).eval()
    deployed.load_state_dict(training.state_dict())  # folded on load, as nnU-Net's predictor loads it
    compiled = torch.compile(deployed, fullgraph=True)
    x = torch.randn(1, 1, *PATCH)
    with torch.no_grad():
        assert _rel(compiled(x), deployed(x)) < 1e-4


def test_compiled_training_step_under_bf16_autocast():
    torch.manual_seed(0)
    net = _network("lrbm")
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(2, 1, *PATCH)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = compiled(x)
        loss = _loss(outputs)
    assert outputs[0].dtype == torch.bfloat16
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(net.parameters(), before))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager_loss = _loss(eager(x))
    assert abs(loss.item() - eager_loss.item()) <= 0.05 * eager_loss.item()  # bf16 rounding, fused differently


# ---- nnU-Net's own compile ------------------------------------------------------------------------------------------

def _trainer(tmp_path, monkeypatch, compile_on: bool):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / var))
    trainer = T.nnUNetTrainerRep3D(dict(copy.deepcopy(PLANS), continue_training=False), "3d_fullres", 0,
                                   DATASET_JSON, torch.device("cpu"))
    # nnU-Net turns compile off on the CPU only through this check; on CUDA it returns True by default
    trainer._do_i_compile = lambda: compile_on
    # initialize() infers the dataset class from the preprocessed files' ending: one empty stand-in
    folder = tmp_path / "nnUNet_preprocessed" / trainer.plans_manager.dataset_name / \
        trainer.configuration_manager.data_identifier
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case_000.b2nd").touch()
    torch.manual_seed(0)
    trainer.initialize()
    return trainer


def test_nnunet_trainer_compiles_the_network_and_its_step_matches_eager(tmp_path, monkeypatch):
    compiled = _trainer(tmp_path / "compiled", monkeypatch, True)
    eager = _trainer(tmp_path / "eager", monkeypatch, False)
    assert isinstance(compiled.network, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(eager.network, torch._dynamo.eval_frame.OptimizedModule)
    compiled.network._orig_mod.load_state_dict(eager.network.state_dict())

    g = torch.Generator().manual_seed(0)
    data = torch.randn(2, 1, *PATCH, generator=g)
    seg = torch.randint(0, N_CLASSES, (2, 1, *PATCH), generator=g).float()
    # one target per deep-supervision output, as nnU-Net's data loader downsamples them
    scales = compiled._get_deep_supervision_scales()
    target = [F.interpolate(seg, scale_factor=tuple(s), mode="nearest-exact") if any(v != 1 for v in s) else seg
              for s in scales]
    batch = {"data": data, "target": target}
    loss_c = compiled.train_step(batch)["loss"]
    loss_e = eager.train_step(batch)["loss"]
    assert loss_c.item() == pytest.approx(loss_e.item(), rel=1e-4)
    # and a second step (after the optimiser moved the weights): still the same
    assert compiled.train_step(batch)["loss"].item() == pytest.approx(eager.train_step(batch)["loss"].item(),
                                                                       rel=1e-4)

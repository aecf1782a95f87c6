"""``e2mim-benchmark encoders``: the frozen encoders' forward variants, one by one.

For each backbone (random weights) every variant below runs once per round, rounds
interleaved (A B C ... A B C ...) so a machine whose load changes slows all alike; the table
shows the median per variant, its GFLOP/s (GEMM and attention FLOPs of the shape, counted
analytically), that rate as a share of a plain 1024x1024 fp32 matmul timed in the same
rounds, and the largest difference to CLIP's own forward (exactness).

image encoder (batch ``--batch``, no autograd):
  clip encode_image             CLIP's module forward (the reference)
  clip, conv1 channels-last     the same on a copy whose conv1 weight and input are channels-last
  fused SDPA, conv patches      e2mim_clip.fused.vit_forward keeping the conv for the patches
  fused SDPA, GEMM patches      the same with the patch embedding as one GEMM
  encode_images (default)       what trainers call: the fused path under inference_mode
  torch.compile(fused)          with --compile (compile time reported separately)
  conv1 only: conv / channels-last / GEMM   the patch embedding alone
text encoder (``--classes`` CoOp prompts, forward + backward to the context):
  stock blocks, fused, fused + checkpoint
"""
import copy
import time

from .bench_timing import median, time_rounds


def vit_flops(visual, batch):
    """GEMM + attention FLOPs of one ViT image-encoder forward on ``batch`` images."""
    D = visual.conv1.weight.shape[0]
    p = visual.conv1.kernel_size[0]
    P = (visual.input_resolution // p) ** 2
    L = P + 1
    layers = len(visual.transformer.resblocks)
    mlp = visual.transformer.resblocks[0].mlp.c_fc.weight.shape[0]
    per_layer = L * (4 * D * D + 2 * D * mlp) + 2 * L * L * D  # qkv + out, MLP, QK^T and AV (MACs)
    out = D * visual.proj.shape[1] if visual.proj is not None else 0
    return 2 * batch * (P * 3 * p * p * D + layers * per_layer + out)


def text_flops(transformer, n, L, backward=True):
    D = transformer.width
    per_layer = L * 12 * D * D + 2 * L * L * D
    fwd = 2 * n * transformer.layers * per_layer
    return fwd * (3 if backward else 1)  # backward to the input: about twice the forward


def run_encoders(a):
    import torch
    import torch.nn.functional as F
    from tabulate import tabulate

    from e2mim_clip import fused
    from e2mim_clip.loader import build_random_clip
    from e2mim_clip.prompting import PromptLearner, TextEncoder, encode_images

    torch.set_num_threads(a.threads or torch.get_num_threads())
    steps, B = max(1, a.steps), a.batch
    A = torch.randn(1024, 1024)
    Bm = torch.randn(1024, 1024)
    reps = 8

    def matmul():
        for _ in range(reps):
            A @ Bm

    matmul_flops = 2 * 1024 ** 3 * reps
    for bb in a.backbones:
        name = bb.split(":", 1)[-1]
        model = build_random_clip(name)
        visual = model.visual
        vit = fused.supports_fused_visual(visual)
        res = visual.input_resolution
        x = torch.randn(B, 3, res, res, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = model.encode_image(x)
        variants = [("matmul 1024^2 fp32", matmul, matmul_flops, None)]
        flops = vit_flops(visual, B) if vit else None

        def img(fn):
            def run():
                with torch.no_grad():
                    return fn()
            return run

        variants.append(("clip encode_image", img(lambda: model.encode_image(x)), flops, "ref"))
        # a copy (the model itself stays as loaded); the input's conversion is part of the time,
        # since images arrive contiguous from the data loader
        cl_visual = copy.deepcopy(visual)
        cl_visual.conv1.weight.data = cl_visual.conv1.weight.data.contiguous(memory_format=torch.channels_last)

        def to_cl():
            return x.contiguous(memory_format=torch.channels_last)

        variants.append(("clip, conv1 channels-last", img(lambda: cl_visual(to_cl())), flops, "out"))
        if vit:
            variants += [
                ("fused SDPA, conv patches", img(lambda: fused.vit_forward(visual, x, "conv")), flops, "out"),
                ("fused SDPA, channels-last conv", img(lambda: fused.vit_forward(visual, x, "channels_last")),
                 flops, "out"),
                ("fused SDPA, GEMM patches", img(lambda: fused.vit_forward(visual, x, "gemm")), flops, "out"),
                ("encode_images (default)", lambda: encode_images(model, x, normalize=False), flops, "out")]
            if a.compile:
                compiled = torch.compile(lambda im: fused.vit_forward(visual, im))
                t0 = time.perf_counter()
                with torch.no_grad():
                    compiled(x)
                print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
                variants.append(("torch.compile(fused)", img(lambda: compiled(x)), flops, "out"))
            conv = visual.conv1
            p = conv.kernel_size[0]
            P = (visual.input_resolution // p) ** 2
            pf = 2 * B * P * 3 * p * p * conv.weight.shape[0]
            variants += [("conv1 only: conv NCHW", img(lambda: conv(x)), pf, None),
                         ("conv1 only: channels-last", img(lambda: cl_visual.conv1(to_cl())), pf, None),
                         ("conv1 only: GEMM", img(lambda: fused.patch_embed(conv, x)), pf, None)]
        # text encoder: forward + backward to the context, as a CoOp step does
        pl = PromptLearner(model, [f"class {i}" for i in range(a.classes)], n_ctx=16)
        enc_fused = TextEncoder(model)
        enc_ckpt = TextEncoder(model)
        enc_ckpt.checkpoint = True
        n, L = pl.tokenized_prompts.shape

        def stock_text(prompts, tok):
            xx = prompts + model.positional_embedding[:L]
            xx = model.transformer(xx.permute(1, 0, 2)).permute(1, 0, 2)
            xx = model.ln_final(xx)
            return xx[torch.arange(n), tok.argmax(-1)] @ model.text_projection

        def text(enc):
            def run():
                pl.ctx.grad = None
                out = enc(pl(), pl.tokenized_prompts)
                F.normalize(out, dim=-1).sum().backward()
                return out.detach()
            return run

        tf = text_flops(model.transformer, n, L)
        text_ref = text(stock_text)()
        variants += [(f"text fwd+bwd ({n} prompts x {L}): stock blocks", text(stock_text), tf, "text_ref"),
                     ("text fwd+bwd: fused", text(enc_fused), tf, "text_out"),
                     ("text fwd+bwd: fused + checkpoint", text(enc_ckpt), tf, "text_out")]

        diffs = {}
        for label, fn, _, kind in variants:  # warm-up, and exactness against the reference
            out = fn()
            if kind == "out":
                diffs[label] = float((out.float() - ref).abs().max())
            elif kind == "text_out":
                diffs[label] = float((out.float() - text_ref).abs().max())
        times = time_rounds({label: fn for label, fn, _, _ in variants}, steps)
        mm_rate = matmul_flops / median(times["matmul 1024^2 fp32"]) / 1e9
        table = []
        for label, _, fl, kind in variants:
            t = median(times[label])
            rate = fl / t / 1e9 if fl else None
            per = "" if label.startswith(("matmul", "conv1", "text")) else f"{1000 * t / B:.1f}"
            table.append([label, f"{1000 * t:.1f}", per, f"{rate:.1f}" if rate else "-",
                          f"{100 * rate / mm_rate:.0f}%" if rate else "-",
                          f"{diffs[label]:.1e}" if label in diffs else ("ref" if kind else "-")])
        print(f"{bb}: batch={B} classes={a.classes} rounds={steps} threads={torch.get_num_threads()} "
              f"(medians; image-encoder forward {flops / B / 1e9 if flops else float('nan'):.1f} GFLOP/image)")
        print(tabulate(table, headers=["variant", "ms", "ms/img", "GFLOP/s", "of matmul", "max |diff|"],
                       tablefmt="github"))

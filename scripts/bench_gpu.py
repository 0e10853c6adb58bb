#!/usr/bin/env python
"""GPU benchmark: what does the post-norm truncation hook cost on a Llama-3.1-8B-shaped model?

Builds the model from a LlamaConfig with Llama 3.1 8B's shape (hidden 4096, 32 layers, 32/8 heads,
vocab 128256) and random bf16 weights directly on the GPU -- no download -- and times, on the same
inputs, with the hook and without it (interleaved, after warmup, torch.cuda.synchronize around
each repeat):

* loglikelihood scoring: a batch of sequences through the model, log_softmax over the vocabulary
  and the target tokens' log-probs gathered (what lm-eval's HF model does per batch);
* greedy decoding with the KV cache (one hook call per generated token, the least favourable case
  for a per-call overhead);
* compute once, score many: the 10 drop conditions of scripts/bench_sweep.py scored on the same
  multiple-choice-shaped loglikelihood requests through llmtrunc's SharedBodyLM (lm-eval's HF model
  underneath), once with the shared body and once with each condition run on its own.

Prints both throughputs and the slowdown and the sweep's cost against one condition, checks that
the hooked logits equal the logits of a head with the dropped columns zeroed, and writes
reports/bench_gpu_<device>.md.

    python scripts/bench_gpu.py                       # defaults: batch 8 x 1024 tokens, 10 repeats
    python scripts/bench_gpu.py --drop random:50%@0 --batch-size 4 --seq-len 2048
    python scripts/bench_gpu.py --smoke               # tiny model on CPU: checks the script, no report

Random weights make the scores meaningless but the arithmetic -- and so the timing -- is that of
the real model.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5,
                  rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=512, max_position_embeddings=256, tie_word_embeddings=False)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drop", default="last-half", help="drop spec to time (default last-half)")
    p.add_argument("--at", default="post-norm", choices=("post-norm", "pre-norm"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--decode-tokens", type=int, default=128, help="greedy tokens per decoding repeat (0: skip)")
    p.add_argument("--sweep-questions", type=int, default=64,
                   help="multiple-choice questions for the compute-once sweep, 4 choices each (0: skip)")
    p.add_argument("--sweep-context", type=int, default=512, help="context tokens per question")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--layers", type=int, default=None, help="override the layer count (e.g. to fit a smaller GPU)")
    p.add_argument("--out", default=None, help="markdown report path (default reports/bench_gpu_<device>.md)")
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU: exercise the script, write no report")
    return p.parse_args(argv)


def build_model(smoke: bool, layers: int | None, device):
    import torch
    import transformers

    shape = dict(SMOKE if smoke else LLAMA31_8B)
    if layers:
        shape["num_hidden_layers"] = layers
    config = transformers.LlamaConfig(**shape)
    dtype = torch.float32 if smoke else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM._from_config(config, dtype=dtype)
    return model.eval(), config


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loglikelihood_step(model, ids):
    """Score ids[:, 1:] given the prefix, as lm-eval's HF model does: full log_softmax, gather targets."""
    import torch

    logits = model(ids).logits[:, :-1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1).sum(-1)


def timed(fn, device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def interleaved(plain_fn, hooked_fn, attach, device, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate plain / hooked repeats so clock and thermal drift hit both alike."""
    plain, hooked = [], []
    timed(plain_fn, device, warmup, 0)
    handle = attach()
    timed(hooked_fn, device, warmup, 0)
    handle.remove()
    for _ in range(repeats):
        plain += timed(plain_fn, device, 0, 1)
        handle = attach()
        hooked += timed(hooked_fn, device, 0, 1)
        handle.remove()
    return plain, hooked


def word_level_tokenizer(vocab_size: int):
    """A tokenizer lm-eval's HF model accepts for an in-memory model (the sweep feeds it token ids)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({str(i): i for i in range(vocab_size)}, unk_token="0"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="0", eos_token="1", pad_token="0")


def compute_once(model, config, device, questions: int, context: int, batch_size: int):
    """Time the 10-condition sweep shared vs separate on 4-choice requests; returns timings and max |diff|."""
    import torch

    from llmtrunc.llm.shared_body import SharedBodyLM
    from llmtrunc.spec import parse_drop

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_sweep import CONDITIONS

    lm = SharedBodyLM(pretrained=model, tokenizer=word_level_tokenizer(config.vocab_size), batch_size=batch_size,
                      max_length=context + 16)
    gen = torch.Generator().manual_seed(1)
    requests = []
    for _ in range(questions):
        prompt = torch.randint(2, config.vocab_size, (context,), generator=gen).tolist()
        for choice in range(4):
            answer = torch.randint(2, config.vocab_size, (2 + choice,), generator=gen).tolist()
            requests.append((("", ""), prompt, answer))

    def run(shared: bool, conditions) -> tuple[float, list]:
        lm.shared = shared
        lm.clear_cache()
        sync(device)
        start = time.perf_counter()
        scores = []
        for drop in conditions:
            lm.set_drop(parse_drop(drop))
            scores.append(lm._loglikelihood_tokens(requests, disable_tqdm=True))
        sync(device)
        return time.perf_counter() - start, scores

    run(False, CONDITIONS[:1])  # warm up both paths
    run(True, CONDITIONS[:1])
    separate, alone = run(False, CONDITIONS)
    shared, together = run(True, CONDITIONS)
    diff = max(abs(a[0] - b[0]) for x, y in zip(alone, together) for a, b in zip(x, y))
    same_greedy = all(a[1] == b[1] for x, y in zip(alone, together) for a, b in zip(x, y))
    lm.set_drop(parse_drop("none"))  # no hooks left on the model
    return dict(conditions=len(CONDITIONS), requests=len(requests), separate=separate, shared=shared,
                ratio=shared / (separate / len(CONDITIONS)), diff=diff, same_greedy=same_greedy)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from llmtrunc.llm import hooks
    from llmtrunc.spec import parse_drop

    if args.smoke:
        device = torch.device("cpu")
        args.batch_size, args.seq_len, args.decode_batch = min(args.batch_size, 2), min(args.seq_len, 32), 2
        args.decode_tokens, args.warmup, args.repeats = min(args.decode_tokens, 4), 1, 2
        args.sweep_questions, args.sweep_context = min(args.sweep_questions, 4), min(args.sweep_context, 24)
    else:
        if not torch.cuda.is_available():
            print("bench_gpu.py needs a CUDA GPU (it times a Llama-3.1-8B-shaped model in bf16); none is available "
                  "here. Run it on a GPU machine, or pass --smoke to check the script on CPU.", file=sys.stderr)
            return 2
        device = torch.device("cuda")
    model, config = build_model(args.smoke, args.layers, device)
    name = "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(device)
    spec = parse_drop(args.drop)
    mask = spec.mask(config.hidden_size)
    indices = mask.dropped
    attach = lambda: hooks.attach(model, mask, args.at)  # noqa: E731
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len), generator=gen).to(device)
    prompt = torch.randint(0, config.vocab_size, (args.decode_batch, 32), generator=gen).to(device)
    shape = "tiny smoke shape" if args.smoke else "Llama-3.1-8B shape"
    print(f"{name}: {shape} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"vocab {config.vocab_size}), {model.dtype}; drop {spec.name} ({len(indices)} dims) at {args.at}")

    with torch.inference_mode():
        # exactness on this device: hook == zeroed LM-head columns (post-norm only)
        check = None
        if args.at == "post-norm":
            captured = []
            spy = hooks.find_lm_head(model).register_forward_pre_hook(lambda m, a: captured.append(a[0]))
            model(ids[:1, :128])  # fills `captured` with the untouched LM-head input
            spy.remove()
            weight = model.lm_head.weight.clone()
            weight[:, list(indices)] = 0
            expected = torch.nn.functional.linear(captured[0], weight)
            del weight
            with hooks.truncated(model, mask, args.at):
                got = model(ids[:1, :128]).logits
            check = (got.float() - expected.float()).abs().max().item()
            del expected, got, captured

        ll_plain, ll_hooked = interleaved(lambda: loglikelihood_step(model, ids), lambda: loglikelihood_step(model, ids),
                                          attach, device, args.warmup, args.repeats)
        dec_plain = dec_hooked = None
        if args.decode_tokens:
            def decode():
                return model.generate(prompt, max_new_tokens=args.decode_tokens, min_new_tokens=args.decode_tokens,
                                      do_sample=False, pad_token_id=0)

            dec_plain, dec_hooked = interleaved(decode, decode, attach, device, max(1, args.warmup // 2),
                                                max(2, args.repeats // 2))

    sweep = None
    if args.sweep_questions:
        sweep = compute_once(model, config, device, args.sweep_questions, args.sweep_context, args.batch_size)

    rows = []

    def row(label, tokens, plain, hooked):
        p, h = statistics.median(plain), statistics.median(hooked)
        slowdown = (h - p) / p * 100
        rows.append((label, tokens / p, tokens / h, slowdown, p, h))
        print(f"{label:28s} plain {tokens / p:12,.0f} tok/s   hooked {tokens / h:12,.0f} tok/s   "
              f"slowdown {slowdown:+.2f}%   (median of {len(plain)}: {p * 1e3:.1f} ms vs {h * 1e3:.1f} ms)")

    row(f"loglikelihood {args.batch_size}x{args.seq_len}", args.batch_size * args.seq_len, ll_plain, ll_hooked)
    if dec_plain:
        row(f"greedy decode {args.decode_batch}x{args.decode_tokens}", args.decode_batch * args.decode_tokens,
            dec_plain, dec_hooked)
    if sweep:
        print(f"compute once: {sweep['conditions']} conditions x {sweep['requests']} requests, shared body "
              f"{sweep['shared']:.2f}s vs separate {sweep['separate']:.2f}s; sweep / one condition = "
              f"{sweep['ratio']:.2f}x, speed-up {sweep['separate'] / sweep['shared']:.1f}x; loglikelihoods max |diff| "
              f"{sweep['diff']:.3g}, greedy flags equal: {sweep['same_greedy']}")
    if check is not None:
        print(f"hooked logits vs zeroed-column head: max |diff| = {check:.3g}")
    if args.smoke:
        return 0

    out = Path(args.out) if args.out else ROOT / "reports" / f"bench_gpu_{name.replace(' ', '_')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Post-norm hook overhead on a Llama-3.1-8B-shaped model", "",
        f"- device: **{name}** (CUDA {torch.version.cuda}, torch {torch.__version__}, {platform.node()})",
        f"- model: LlamaConfig with Llama 3.1 8B's shape ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocab {config.vocab_size}), random {model.dtype} weights built on the GPU (no download)",
        f"- drop: `{spec.name}` ({len(indices)} of {config.hidden_size} dims) at {args.at}",
        f"- method: same inputs with and without the hook, interleaved repeats after {args.warmup} warmups, "
        "torch.cuda.synchronize around each; medians",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}", "",
        "| workload | plain tok/s | hooked tok/s | slowdown | plain ms | hooked ms |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:,.0f} | {r[2]:,.0f} | {r[3]:+.2f}% | {r[4] * 1e3:.1f} | {r[5] * 1e3:.1f} |" for r in rows],
    ]
    if sweep:
        lines += ["", f"Compute once, score many ({sweep['conditions']} drop conditions of scripts/bench_sweep.py, "
                      f"{args.sweep_questions} four-choice questions with {args.sweep_context}-token contexts = "
                      f"{sweep['requests']} loglikelihood requests, batch {args.batch_size}, through SharedBodyLM):", "",
                  "| path | seconds | per condition |", "|---|---:|---:|",
                  f"| each condition on its own | {sweep['separate']:.2f} | {sweep['separate'] / sweep['conditions']:.2f} |",
                  f"| shared body | {sweep['shared']:.2f} | {sweep['shared'] / sweep['conditions']:.2f} |", "",
                  f"The whole sweep costs {sweep['ratio']:.2f}x one condition run on its own (speed-up "
                  f"{sweep['separate'] / sweep['shared']:.1f}x); loglikelihoods differ by at most {sweep['diff']:.3g} "
                  f"({model.dtype}), greedy flags equal: {sweep['same_greedy']}."]
    if check is not None:
        lines += ["", f"Exactness on this device: hooked logits vs a head with the dropped columns zeroed, "
                      f"max |diff| = {check:.3g} ({model.dtype})."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

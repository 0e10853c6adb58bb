"""`llmtrunc export`: write a truncated model as a checkpoint any engine loads (vLLM, TGI, transformers)."""

from __future__ import annotations

from llmtrunc.commands.options import add_via_option
from llmtrunc.llm.models import DEFAULT_MODEL


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a post-norm-truncated model as an ordinary safetensors checkpoint",
        description="Zeroing dimensions of the post-norm hidden state is exactly zeroing the matching entries of "
                    "the final norm's scale (norm method; -1 for Gemma's 1 + w, and the bias of a LayerNorm) or the "
                    "matching columns of the LM head (head method; a tied head is untied). This writes that "
                    "checkpoint (config and tokenizer carried over, the drop recorded in config.json under "
                    "llmtrunc_drop and in llmtrunc_drop.json) for vLLM or any other engine, after checking that "
                    "it reloads with the hook path's logits. Pre-norm drops cannot be expressed as weights and "
                    "are refused.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias (see `llmtrunc models`), Hub id, model directory or .gguf file (default {DEFAULT_MODEL})")
    parser.add_argument("--revision", default="main", help="Hub revision of the model")
    parser.add_argument("--drop", required=True,
                        help="one drop spec: none, first-half, last-half, first:K, last:K, random:K[@SEED], indices:FILE")
    parser.add_argument("--seed", type=int, default=None, help="seed for random:K without @SEED (default 0)")
    parser.add_argument("--at", default="post-norm",
                        help="post-norm (default; the only position expressible as weights)")
    parser.add_argument("--dtype", default="auto",
                        help="dtype of the written weights: auto (as loaded; GGUF dequantises to float32), "
                             "float32, bfloat16, float16")
    add_via_option(parser)
    parser.add_argument("--out", required=True, help="directory to write (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.set_defaults(func=run)


def run(args) -> int:
    from llmtrunc.errors import LLMTruncError
    from llmtrunc.llm.export import check_exportable, export, read_drop
    from llmtrunc.llm.models import resolve_model
    from llmtrunc.spec import parse_drops

    specs = parse_drops(args.drop, args.seed)
    if len(specs) != 1:
        raise LLMTruncError(f"export writes one checkpoint per drop: got {len(specs)} specs in --drop {args.drop!r}")
    spec = specs[0]
    check_exportable(spec, args.at)
    if args.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise LLMTruncError(f"unknown --dtype {args.dtype!r}: choose auto, float32, bfloat16 or float16")
    ref = resolve_model(args.model)
    out = export(ref, spec, args.out, args.at, args.revision, args.dtype, "overwrite" if args.overwrite else "error",
                 args.via)
    meta = read_drop(out)
    print(f"wrote {out} ({ref.name}, drop {spec.name} at {args.at}, via {meta['method']}); verified against the hook "
          f"path: max |logit difference| {meta['verification']['max_abs_logit_diff']:.3g}")
    return 0

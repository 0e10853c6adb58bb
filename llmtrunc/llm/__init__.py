"""The LLM track: truncation hooks on a causal LM's final hidden state, scored by lm-evaluation-harness.

    architectures.py  hooks/<family>.yaml: where the hooks attach and how (decoder, final norm, LM head),
                      the positions and the export methods
    hooks.py          the truncation hooks (post-norm / pre-norm)
    hf_trunc.py       lm-eval model `hf-trunc` (HFLM with hooks)
    protocol.py       TruncLM: the LM interface the runner's cells need (hf-trunc, vLLM), an abstract base class
    shared_body.py    compute once, score many (`SharedBodyLM`: `SharedScoring` and `SharedGeneration`)
    generation.py     shared generation: one prefill per prompt, every condition decoded together
    shared_prefix.py  shared-prefix attention: a prompt's cache read once for all its rows
    run.py            one way into an LLM run (eval, sweep, attribute, verify): settings, tasks, cells, store
    evaluate.py       LLM cells for the runner: spec -> mask -> hooks -> lm-eval -> records
    attribution.py    per-dimension attribution (`llmtrunc attribute`)
    calibration.py    activation profiles of the final hidden state (outliers, top:K ...)
    tasks.py          task metadata, name mapping to tasks/, task fingerprints
    models.py         model aliases
    gguf.py           a local GGUF file as a dense checkpoint, converted once into the cache
    compat.py         every reliance on lm-eval's, transformers' and vLLM's internals, installed at start-up
    export.py         truncated checkpoints for vLLM and other engines
    vllm_backend.py   `--backend vllm`
    quantization.py   bitsandbytes loading
    squad_v2.py       the official SQuAD 2.0 metric, offline
    sweep.py          sweep configs (YAML)
    report.py         the LLM report
"""

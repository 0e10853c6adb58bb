"""The LLM track: truncation hooks on a causal LM's final hidden state, scored by lm-evaluation-harness.

    architectures.py  hooks/<family>.yaml: where the hooks attach and how (decoder, final norm, LM head)
    hooks.py          the truncation hooks (post-norm / pre-norm)
    hf_trunc.py       lm-eval model `hf-trunc` (HFLM with hooks)
    shared_body.py    compute once, score many (`SharedBodyLM`)
    evaluate.py       LLM cells for the runner: spec -> mask -> hooks -> lm-eval -> records
    tasks.py          task metadata, name mapping to tasks/, task fingerprints
    models.py         model aliases
    export.py         truncated checkpoints for vLLM and other engines
    vllm_backend.py   `--backend vllm`
    quantization.py   bitsandbytes loading
    squad_v2.py       the official SQuAD 2.0 metric, offline
    sweep.py          sweep configs (YAML)
    report.py         the LLM report
"""

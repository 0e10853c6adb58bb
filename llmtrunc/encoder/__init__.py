"""Encoder track: sentence embeddings with dimensions removed, scored on retrieval, classification and STS.

One concept per module:

    models.py      alias registry (hub id, similarity, prompts) and loading through sentence-transformers
    cache.py       on-disk embedding cache: encode once per (model, revision, texts, prompt)
    truncate.py    drop specs (llmtrunc.spec.Mask) and PCA applied to embedding matrices
    tasks/         retrieval (BEIR layout), classification (MTEB protocol), STS; task metadata + folder detection
    evaluate.py    encoder cells and their compute function for the one runner (llmtrunc.runner)
    report.py      retention-vs-K curves and the table at 50%
    analysis/      outlier dimensions, anisotropy, dimension attribution, PCA vs random (`encoder analyze`)
    analysis_report.py  the report of the analyses and of SimCSE training
    simcse.py      SimCSE contrastive training with metrics over checkpoints (`encoder train-simcse`)
    mteb_wrapper.py  TruncatedEncoder, usable in mteb.evaluate (mteb imported lazily)

Nothing heavy (torch, sentence-transformers, mteb) is imported by this package's __init__.
"""

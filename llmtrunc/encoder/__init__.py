"""Encoder track: sentence embeddings with dimensions removed, scored on retrieval, classification and STS.

One concept per module:

    models.py      alias registry (hub id, similarity, prompts) and loading through sentence-transformers
    cache.py       on-disk embedding cache: encode once per (model, revision, texts, prompt)
    truncate.py    DropSpec / PCA variants applied to embedding matrices
    tasks/         retrieval (BEIR layout), classification (MTEB protocol), STS; registry + folder detection
    evaluate.py    the grid runner that writes records into llmtrunc.store.ResultsStore
    report.py      retention-vs-K curves and the table at 50%
    mteb_wrapper.py  TruncatedEncoder, usable in mteb.evaluate (mteb imported lazily)

Nothing heavy (torch, sentence-transformers, mteb) is imported by this package's __init__.
"""

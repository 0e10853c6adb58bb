"""Encoder analyses (issue 5): why removing random embedding dimensions hurts so little.

    metrics.py      uniformity, alignment, IsoScore, Corr Mean, outlier dimensions (numpy, hand-checkable)
    attribution.py  score change from removing each dimension alone: closed-form vectorised cosine retrieval
                    (nDCG@10) and STS, the naive loop for any task (classification), degrading/improving sets
    run.py          `llmtrunc encoder analyze`: runs the analyses on cached embeddings into the results store
    cli.py          registration of `llmtrunc encoder analyze` (and `train-simcse`, implemented in ../simcse.py)

Records go to the results store with track "encoder-analysis"; `llmtrunc.encoder.analysis_report` draws them.
Nothing heavy is imported here.
"""

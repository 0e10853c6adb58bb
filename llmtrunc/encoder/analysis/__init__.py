"""Encoder analyses (issue 5): why removing random embedding dimensions hurts so little.

    metrics.py      uniformity, alignment, IsoScore, Corr Mean, outlier dimensions (numpy, hand-checkable)
    attribution.py  score change from removing each dimension alone: closed-form vectorised cosine retrieval
                    (nDCG@10) and STS, the naive loop for any task (classification), degrading/improving sets
    run.py          the analyses' cells and their compute function for the one runner, on cached embeddings

`llmtrunc encoder analyze` (llmtrunc/commands/encoder.py) runs them; records go to the results store with track
"encoder-analysis", and `llmtrunc.encoder.analysis_report` draws them. Nothing heavy is imported here.
"""

"""`llmtrunc encoder train-simcse`: contrastive SimCSE training with metrics tracked over checkpoints.

Unsupervised SimCSE (Gao et al. 2021): each sentence of wiki_sentences.txt is its own positive; the two
forward passes (anchor and positive columns) draw different dropout masks, the other sentences of the
batch are the negatives; InfoNCE with temperature 0.05 = sentence-transformers'
MultipleNegativesRankingLoss(scale=1/0.05=20) on (anchor, positive = the same text).
Supervised SimCSE: SNLI pairs grouped by premise, entailment hypothesis = positive, contradiction
hypothesis = hard negative, same loss on (anchor, positive, negative) (in-batch + hard negatives).
Training runs through SentenceTransformerTrainer, saving a checkpoint every --save-steps.

At step 0 (the base model) and every checkpoint (reloaded from its folder) the tracker records, on
STS-B dev: cosine Spearman, alignment (pairs with gold >= 4), uniformity, IsoScore and Corr Mean of the
sentence embeddings, and the retention (score / full score) of STS-B dev Spearman and of a SciFact
retrieval subset's nDCG@10 at random 50% truncation (mean over --seeds). Records go to the results
store (track "encoder-analysis", analysis "simcse-unsup" / "simcse-sup"), so `analysis_report` draws
the metrics over steps with the truncation retention beside the anisotropy metrics.

Base models: minilm (offline), or any hub id / folder (bert-base-uncased, google-t5/t5-base: a plain
transformer is wrapped with mean pooling by sentence-transformers) for users who can download.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from llmtrunc.data import data_dir as find_data_dir
from llmtrunc.encoder.models import DEFAULT_MODEL
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import digest, file_digest
from llmtrunc.record import RecordBuilder, cell_key
from llmtrunc.runner import Cell, Computed
from llmtrunc.retention import retention
from llmtrunc.spec import parse_drop

TRACK = "encoder-analysis"
TEMPERATURE = 0.05
RANDOM_HALF = parse_drop("random:50%")  # the truncation whose retention is tracked over training (a seed per draw)


def read_wiki(path: Path, n: int | None = None, min_chars: int = 10) -> list[str]:
    sentences = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if len(s.strip()) >= min_chars]
    return sentences[:n] if n else sentences


def snli_triplets(folder: Path, splits: tuple[str, ...] = ("dev", "test")) -> list[tuple[str, str, str]]:
    """(premise, entailment hypothesis, contradiction hypothesis): per premise, each entailment paired with a
    contradiction of the same premise (cycled when there are fewer contradictions); premises lacking either are skipped."""
    triplets = []
    for split in splits:
        s1 = (folder / f"s1.{split}").read_text(encoding="utf-8").splitlines()
        s2 = (folder / f"s2.{split}").read_text(encoding="utf-8").splitlines()
        labels = (folder / f"labels.{split}").read_text(encoding="utf-8").splitlines()
        if not len(s1) == len(s2) == len(labels):
            raise LLMTruncError(f"{folder}: s1/s2/labels.{split} differ in length")
        groups: dict[str, dict[str, list[str]]] = {}
        for premise, hypothesis, label in zip(s1, s2, labels):
            groups.setdefault(premise.strip(), {}).setdefault(label.strip(), []).append(hypothesis.strip())
        for premise, by_label in groups.items():
            pos, neg = by_label.get("entailment", []), by_label.get("contradiction", [])
            for i, p in enumerate(pos):
                if neg:
                    triplets.append((premise, p, neg[i % len(neg)]))
    return triplets


def contrastive_loss(model, anchors: list[str], positives: list[str], negatives: list[str] | None = None,
                     temperature: float = TEMPERATURE) -> float:
    """The SimCSE/InfoNCE loss of one fixed batch, computed without dropout (model in eval mode)."""
    import torch

    with torch.no_grad():
        a = model.encode(anchors, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        candidates = positives + (negatives or [])
        c = model.encode(candidates, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        logits = a @ c.T / temperature
        return float(torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors))))


@dataclass
class SimCSEConfig:
    mode: str = "unsup"  # unsup | sup
    model: str = DEFAULT_MODEL
    out_dir: str | None = None  # checkpoint folder (None = .cache/simcse/MODE, so the two modes never mix)
    steps: int = 200
    batch_size: int = 32
    max_seq_length: int = 32
    learning_rate: float | None = None  # SimCSE: 3e-5 unsup, 5e-5 sup
    save_steps: int = 50
    seed: int = 42
    n_train: int | None = None  # sentences / triplets used (None = all)
    data_dir: str | None = None
    eval_seeds: list[int] = field(default_factory=lambda: list(range(5)))
    retrieval_limit: int = 30  # SciFact subset for the retrieval retention: queries
    retrieval_corpus: int = 300  # and corpus docs (relevant docs always kept)
    eval_max_seq_length: int | None = 128  # encoding length for the tracked metrics (None = the checkpoint's)
    device: str | None = "cpu"

    def __post_init__(self):
        self.out_dir = self.out_dir or f".cache/simcse/{self.mode}"

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else (3e-5 if self.mode == "unsup" else 5e-5)


def load_base(name: str, device: str | None, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    from llmtrunc.encoder.models import resolve_model

    spec = resolve_model(name)
    source = spec.local_path() if spec.local_path else spec.hub_id
    try:
        model = SentenceTransformer(source, device=device)
    except Exception as exc:
        raise LLMTruncError(f"cannot load base model {source!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    model.max_seq_length = max_seq_length
    return spec, source, model


def build_dataset(config: SimCSEConfig):
    from datasets import Dataset

    root = find_data_dir(config.data_dir) / "simcse"
    if config.mode == "unsup":
        sentences = read_wiki(root / "wiki_sentences.txt", config.n_train)
        return Dataset.from_dict({"anchor": sentences, "positive": sentences})
    if config.mode == "sup":
        triplets = snli_triplets(root / "snli")
        if config.n_train:
            triplets = triplets[: config.n_train]
        a, p, n = zip(*triplets)
        return Dataset.from_dict({"anchor": list(a), "positive": list(p), "negative": list(n)})
    raise LLMTruncError(f"unknown SimCSE mode {config.mode!r}: unsup or sup")


def train(config: SimCSEConfig, log: Callable[[str], None] = print) -> dict:
    """Train and save checkpoints under out_dir; returns the training log (losses per logging step)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    spec, _, model = load_base(config.model, config.device, config.max_seq_length)
    dataset = build_dataset(config)
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / TEMPERATURE)
    args = SentenceTransformerTrainingArguments(
        output_dir=config.out_dir, max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr, lr_scheduler_type="linear", save_strategy="steps", save_steps=config.save_steps,
        logging_steps=max(1, min(10, config.save_steps)), seed=config.seed, data_seed=config.seed, report_to="none",
        dataloader_drop_last=True, use_cpu=config.device == "cpu", save_only_model=True, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    log(f"simcse {config.mode}: {config.steps} steps in {seconds:.0f}s; loss {losses[0][1]:.4f} -> {losses[-1][1]:.4f}" if losses else "no loss logged")
    return {"seconds": seconds, "losses": losses, "n_train": len(dataset), "model_id": spec.hub_id, "alias": spec.alias}


def checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    found = []
    for path in Path(out_dir).glob("checkpoint-*"):
        if path.is_dir() and path.name.split("-")[-1].isdigit() and (path / "modules.json").is_file():
            found.append((int(path.name.split("-")[-1]), path))
    return sorted(found)


class Tracker:
    """Metrics of one model state: STS-B dev Spearman, alignment, uniformity, IsoScore, Corr Mean, retentions."""

    def __init__(self, config: SimCSEConfig):
        from llmtrunc.encoder.tasks import Limits, resolve_task
        from llmtrunc.encoder.tasks.sts import STSTask, read_stsb

        root = find_data_dir(config.data_dir)
        dev = read_stsb(root / "sts" / "stsbenchmark" / "sts-dev.csv")
        self.sts = STSTask("stsb-dev", dev, [], split="dev")
        self.retrieval = resolve_task("scifact", config.data_dir, Limits(limit=config.retrieval_limit, max_corpus=config.retrieval_corpus))
        self.config = config

    def measure(self, model) -> dict[str, float]:
        from llmtrunc.encoder.analysis import metrics as M

        if self.config.eval_max_seq_length:
            model.max_seq_length = self.config.eval_max_seq_length
        enc = lambda texts: np.asarray(model.encode(list(texts), batch_size=32, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)  # noqa: E731
        sts = self.sts
        emb = {"sentences": enc(sts.sentences)}
        keep = sts.gold >= 4.0
        out = {"stsb_dev_spearman": sts.score(emb, "cosine", emb)["cosine_spearman"],
               "alignment": M.alignment(emb["sentences"][sts.left[keep]], emb["sentences"][sts.right[keep]]),
               "uniformity": M.uniformity(emb["sentences"]), "isoscore": M.isoscore(emb["sentences"]),
               "corr_mean": M.corr_mean(emb["sentences"])}
        r = self.retrieval
        remb = {"queries": enc(r.query_texts), "corpus": enc(r.doc_texts)}
        out["scifact_ndcg_at_10"] = r.score(remb, "cosine", remb)["ndcg_at_10"]
        dim = emb["sentences"].shape[1]
        sts_ret, ir_ret = [], []
        for seed in self.config.eval_seeds:
            mask = RANDOM_HALF.with_seed(seed).mask(dim)
            score = sts.score({"sentences": mask.remove(emb["sentences"])}, "cosine", emb)["cosine_spearman"]
            sts_ret.append(retention(score, out["stsb_dev_spearman"], sts.higher_is_better))
            cut = {k: mask.remove(v) for k, v in remb.items()}
            ir_ret.append(retention(r.score(cut, "cosine", remb)["ndcg_at_10"], out["scifact_ndcg_at_10"], r.higher_is_better))
        out["sts_retention_random50"] = float(np.mean(sts_ret))
        out["sts_retention_random50_std"] = float(np.std(sts_ret))
        out["retrieval_retention_random50"] = float(np.mean(ir_ret))
        out["retrieval_retention_random50_std"] = float(np.std(ir_ret))
        return {k: float(v) for k, v in out.items()}


def data_sha256(config: SimCSEConfig) -> str:
    """Content hash of everything a run reads: its training data and the tracker's STS-B dev and SciFact subset."""
    from llmtrunc.encoder.tasks import Limits, resolve_task

    root = find_data_dir(config.data_dir)
    train = [root / "simcse" / "wiki_sentences.txt"] if config.mode == "unsup" else \
        [root / "simcse" / "snli" / f"{part}.{split}" for split in ("dev", "test") for part in ("s1", "s2", "labels")]
    scifact = resolve_task("scifact", config.data_dir, Limits(limit=config.retrieval_limit, max_corpus=config.retrieval_corpus))
    return digest([*(file_digest(p) for p in train), file_digest(root / "sts" / "stsbenchmark" / "sts-dev.csv"),
                   scifact.fingerprint()])


def simcse_settings(config: SimCSEConfig) -> dict:
    """Every setting that changes a training run's numbers (where the data lives and the device do not): the
    base model by what it is (its revision: a local copy's content hash) and the data by its content."""
    from llmtrunc.encoder.models import Encoder, resolve_model

    settings = {k: v for k, v in asdict(config).items() if k not in ("data_dir", "device")}
    settings.update(track=TRACK, analysis=f"simcse-{config.mode}", lr=config.lr, temperature=TEMPERATURE,
                    revision=Encoder(resolve_model(config.model)).revision, data=data_sha256(config))
    return settings


def simcse_cell(config: SimCSEConfig) -> Cell:
    """The one runner cell of a training run, keyed by its settings."""
    from llmtrunc.encoder.models import resolve_model

    return Cell(cell_key(simcse_settings(config)), (resolve_model(config.model).alias, "simcse", config.mode),
                ("simcse", config.mode), config)


def compute(cells: list[Cell], log: Callable[[str], None] = print) -> Iterator[Computed]:
    """Train, then measure the base model (step 0) and every checkpoint (reloaded from disk)."""
    from sentence_transformers import SentenceTransformer

    for cell in cells:
        config: SimCSEConfig = cell.payload
        trained = train(config, log)
        tracker = Tracker(config)
        settings = simcse_settings(config)
        record = RecordBuilder(cell.run_id, TRACK, settings, model=trained["alias"], model_id=trained["model_id"],
                               revision=settings["revision"], data=settings["data"], task="simcse", analysis=f"simcse-{config.mode}", mode=config.mode, settings=settings,
                               n_train=trained["n_train"], train_seconds=round(trained["seconds"], 1))
        records = [record("train_loss", loss, step=int(step), condition="train") for step, loss in trained["losses"]]
        for step, path in [(0, None)] + checkpoints(config.out_dir):
            t0 = time.perf_counter()
            model = load_base(config.model, config.device, config.max_seq_length)[2] if path is None else \
                SentenceTransformer(str(path), device=config.device)
            values = tracker.measure(model)
            records += [record(name, value, step=step, condition="checkpoint", checkpoint=str(path) if path else "base")
                        for name, value in values.items()]
            log(f"  step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items() if not k.endswith("_std"))
                + f" ({time.perf_counter() - t0:.0f}s)")
        yield cell, records, {"settings.json": settings}

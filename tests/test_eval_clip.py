"""CLIP metrics with a tiny random-weight CLIPModel built from a config and saved to a folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.judging.metrics import clip
from tests.eval_support import tiny_clip_dir


@pytest.fixture(scope="module")
def clip_dir():
    return tiny_clip_dir()


def test_r_precision_is_one_when_each_render_is_its_captions_embedding():
    torch.manual_seed(0)
    captions = torch.nn.functional.normalize(torch.randn(10, 16), dim=-1)
    for target in range(10):
        views = captions[target].repeat(4, 1)  # every view embeds exactly as its own caption
        assert clip.r_precision(views, captions, target) == 1.0
        assert clip.r_precision(views, captions, (target + 1) % 10) == 0.0


def test_clip_score_is_one_hundred_cosine_clamped_at_zero():
    text = torch.tensor([1.0, 0.0])
    assert clip.clip_score(torch.tensor([[2.0, 0.0]]), text) == pytest.approx(100.0)
    assert clip.clip_score(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), text) == pytest.approx(100 / np.sqrt(2) / 2)
    assert clip.clip_score(torch.tensor([[-1.0, 0.0]]), text) == 0.0
    assert clip.image_similarity(torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(50)


def test_caption_index_finds_or_prepends_the_prompt():
    captions = ["A red car.", "a dog"]
    assert clip.caption_index("a red car", captions) == (captions, 0)
    assert clip.caption_index("a cat", captions) == (["a cat", *captions], 0)


def test_scorer_loads_from_a_folder_and_embeds(clip_dir):
    scorer = clip.CLIPScorer.load(clip_dir)
    assert clip.CLIPScorer.load(clip_dir) is scorer  # cached by methods.runtime
    texts = scorer.embed_texts(["a red car", "a dog", "a red car"])
    assert texts.shape == (3, 16) and torch.allclose(texts.norm(dim=-1), torch.ones(3))
    assert torch.equal(texts[0], texts[2])
    images = np.random.default_rng(0).random((3, 48, 48, 3))  # resized to the model's 32 px
    emb = scorer.embed_images(images)
    assert emb.shape == (3, 16) and torch.equal(emb, scorer.embed_images(images))
    assert scorer.describe()["clip_model"] == clip_dir
    acc = clip.CLIPScore(scorer)
    acc.update(images, "a red car")
    assert 0 <= acc.compute() <= 100
    rp = clip.RPrecision(scorer, ["a dog", "a cat"])
    assert 0 <= rp.update(images, "a red car") <= 1


def test_asset_embedding_for_diversity(clip_dir):
    from eval.judging.metrics.diversity import Diversity, asset_embedding
    from tests.eval_support import mesh_asset, unit_cube

    scorer = clip.CLIPScorer.load(clip_dir)
    box = mesh_asset(unit_cube())
    emb = asset_embedding(scorer, box, views=2, resolution=32)
    assert emb.shape == (16,) and np.isclose(np.linalg.norm(emb), 1.0)
    acc = Diversity()
    points = box.mesh.vertices
    acc.update(points, emb)
    acc.update(points, asset_embedding(scorer, box, views=2, resolution=32))
    assert acc.compute() == {"pairwise_chamfer_l1": 0.0, "pairwise_clip_distance": pytest.approx(0.0, abs=1e-6)}


def test_uncached_weights_say_why(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache, wherever this runs
    reason = clip.clip_unavailable_reason("openai/clip-vit-base-patch32")
    assert reason and "HF_HUB_OFFLINE=1" in reason and "openai/clip-vit-base-patch32" in reason
    with pytest.raises(clip.CLIPUnavailable):
        clip.CLIPScorer.load("openai/clip-vit-base-patch32")
    assert "no such" in clip.clip_unavailable_reason(str(tmp_path / "nowhere" / "clip.bin"))

"""The ingredient pretraining code at micro size (seconds), and the shipped miniature ingredients."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from anyref.config import LLMConfig, SAMConfig, VisionConfig
from anyref.data import make_scene
from anyref.data.words import build_word_tokenizer
from anyref.errors import AnyRefCheckpointError, AnyRefInputError
from anyref.pretrain import clip_mini, llava_mini, sam_mini
from anyref.sam import build_sam
from anyref.tokens import IGNORE_INDEX, IMAGE_TOKEN, encode, encode_conversation

MICRO_VISION = dict(image_size=48, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
MICRO_SAM = SAMConfig(image_size=64, patch_size=8, embed_dim=32, depth=1, num_heads=2, prompt_dim=32,
                      decoder_depth=1, decoder_mlp_dim=64, decoder_heads=2)
MICRO_CLIP = clip_mini.CLIPMiniConfig(vision=VisionConfig(**MICRO_VISION),
                                      text=clip_mini.TextTowerConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                                     intermediate_size=64), projection_dim=16)


def test_sam_prompts_are_two_tokens_for_boxes_and_points():
    scenes = [sam_mini.make_scene(np.random.default_rng(i), image_size=64) for i in range(3)]
    index, points, labels, masks = sam_mini.prompt_batch(scenes, np.random.default_rng(0), point_fraction=0.5,
                                                         box_noise=0.0, scale=1.0, per_image=2)
    assert points.shape == (len(index), 2, 2) and labels.shape == (len(index), 2)
    assert masks.shape == (len(index), 64, 64) and masks.flatten(1).any(1).all()
    sam = build_sam(MICRO_SAM)
    assert sam_mini.sparse_prompts(sam, points, labels).shape == (len(index), 2, 32)
    box_rows = labels[:, 0] == 2  # exact boxes hold every mask pixel
    for row in box_rows.nonzero()[:, 0].tolist():
        ys, xs = masks[row].nonzero(as_tuple=True)
        (x1, y1), (x2, y2) = points[row].tolist()
        assert x1 <= xs.min() and xs.max() < x2 and y1 <= ys.min() and ys.max() < y2


def test_sam_pretraining_is_seeded_and_learns(tmp_path):
    settings = sam_mini.SAMPretrainConfig(steps=12, batch_size=2, image_size=64, lr=3e-3, warmup_steps=2)
    sam, first = sam_mini.pretrain_sam(MICRO_SAM, settings, progress=False)
    _, second = sam_mini.pretrain_sam(MICRO_SAM, settings, progress=False)
    assert first.losses == second.losses
    assert np.mean(first.losses[-3:]) < np.mean(first.losses[:3])
    assert 0.0 <= sam_mini.evaluate_sam(sam, num_scenes=4, image_size=64) <= 1.0
    folder = sam_mini.save_sam_mini(sam, MICRO_SAM, tmp_path / "sam")
    with pytest.raises(AnyRefCheckpointError, match="overwrite"):
        sam_mini.save_sam_mini(sam, MICRO_SAM, tmp_path / "sam")
    again = build_sam(SAMConfig(**{**MICRO_SAM.__dict__, "checkpoint": str(folder / "model.safetensors")}))
    for (name, a), b in zip(sam.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_clip_pretraining_is_seeded_and_learns(tmp_path):
    settings = clip_mini.CLIPPretrainConfig(steps=10, batch_size=12, lr=3e-3, warmup_steps=2, region_steps=0)
    clip, tokenizer, first = clip_mini.pretrain_clip(MICRO_CLIP, settings, progress=False)
    _, _, second = clip_mini.pretrain_clip(MICRO_CLIP, settings, progress=False)
    assert first.losses == second.losses
    torch.manual_seed(settings.seed)
    given = clip_mini.build_clip(MICRO_CLIP, build_word_tokenizer())
    trained, _, third = clip_mini.pretrain_clip(MICRO_CLIP, settings, progress=False, clip=given)
    assert trained is given and third.losses == first.losses  # a CLIP built by the caller trains the same way
    assert np.mean(first.losses[-3:]) < np.mean(first.losses[:3])
    emb = clip_mini.encode_texts(clip, tokenizer, ["a red circle", "a small blue star"])
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert 0.0 <= clip_mini.zero_shot_accuracy(clip, tokenizer, num_scenes=3) <= 1.0
    folder = clip_mini.save_clip_mini(clip, tmp_path / "clip")
    loaded, _ = clip_mini.load_clip_mini(folder)
    crops = np.zeros((2, 48, 48, 3), dtype=np.uint8)
    assert torch.allclose(clip_mini.encode_images(clip, crops), clip_mini.encode_images(loaded, crops), atol=1e-6)


def test_region_term_pairs_patch_tokens_with_the_object_under_them():
    scene = clip_mini.make_scene(np.random.default_rng(3), image_size=48)
    labels = clip_mini.patch_labels(scene, grid=6, min_coverage=0.25)
    assert labels.shape == (36,) and (labels == -1).any()  # background cells stay unlabelled
    for index, obj in enumerate(scene.objects):
        x, y = obj.centre
        assert labels[int(y * 6 / 48) * 6 + int(x * 6 / 48)] == index
    covered = scene.masks.reshape(len(scene.objects), 6, 8, 6, 8).mean(axis=(2, 4)).reshape(len(scene.objects), -1)
    assert (covered[labels[labels >= 0], np.nonzero(labels >= 0)[0]] > 0).all()  # a label names an object that is there
    clip = clip_mini.build_clip(MICRO_CLIP, build_word_tokenizer())
    loss = clip_mini.region_loss(clip, build_word_tokenizer(), [scene], min_coverage=0.25)
    loss.backward()
    assert torch.isfinite(loss) and clip.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0


def test_clip_region_stage_follows_the_pair_stage_and_resumes(tmp_path):
    settings = clip_mini.CLIPPretrainConfig(steps=3, batch_size=8, warmup_steps=1, region_steps=3, region_pairs=6,
                                            region_scenes=2)
    seen = []
    _, _, whole = clip_mini.pretrain_clip(MICRO_CLIP, settings, progress=False, run_dir=tmp_path / "run",
                                          callback=lambda step, result: seen.append((step, len(result.losses))))
    assert seen == [(k, k) for k in range(1, 7)] and whole.steps == 6 and len(whole.losses) == 6
    assert (tmp_path / "run" / clip_mini.REGION_DIR).is_dir()
    _, _, first = clip_mini.pretrain_clip(MICRO_CLIP, replace(settings, region_steps=0), progress=False)
    assert first.losses == whole.losses[:3]  # stage 1 is the pair recipe unchanged
    longer = replace(settings, region_steps=5)  # a longer stage 2 is a new schedule: only stage 1 carries over
    with pytest.raises(AnyRefCheckpointError, match="other settings"):
        clip_mini.pretrain_clip(MICRO_CLIP, longer, progress=False, run_dir=tmp_path / "run", resume=True)
    _, _, resumed = clip_mini.pretrain_clip(MICRO_CLIP, settings, progress=False, run_dir=tmp_path / "run",
                                            resume=True)
    assert resumed.losses == whole.losses
    assert clip_mini.concept_pool()[0] == "a small red circle" and len(clip_mini.concept_pool()) == 72


def test_llava_stages_run_on_a_clip_folder(tmp_path):
    clip = clip_mini.build_clip(MICRO_CLIP, build_word_tokenizer())
    folder = clip_mini.save_clip_mini(clip, tmp_path / "clip")
    settings = llava_mini.LLaVAPretrainConfig(lm_steps=3, lm_batch=4, align_steps=2, align_batch=2,
                                             instruct_steps=2, instruct_batch=2, instruct_turns=2)
    llm = LLMConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64,
                    max_positions=128, use_lora=False)
    model, histories = llava_mini.pretrain_llava(str(folder), settings, vision=VisionConfig(**MICRO_VISION), llm=llm,
                                                 stages=llava_mini.STAGES, progress=False)  # "align" too
    assert [len(histories[k]) for k in ("lm", "align", "instruct")] == [3, 2, 2]
    # stage 1 trains the projector only: CLIP stays as loaded
    loaded = {k.split("embeddings.", 1)[-1]: v for k, v in model.vision.clip.state_dict().items() if "embeddings." in k}
    assert torch.equal(loaded["patch_embedding.weight"], clip.vision_model.embeddings.patch_embedding.weight)
    scores = llava_mini.answer_accuracy(model, num=2)
    assert set(scores) == {"colour", "shape", "where", "count", "overall"}
    saved = llava_mini.save_llava_mini(model, tmp_path / "llava")
    assert {p.name for p in saved.iterdir()} >= {"llm", "projector.safetensors", "tokenizer"}


def test_the_instruction_curriculum_starts_with_one_object_and_ends_at_shapescenes_range():
    steps, rng = 600, np.random.default_rng(0)
    counts = {step: len(make_scene(rng, image_size=64, **llava_mini.curriculum_objects(step, steps)).objects)
              for step in (0, 99, 599, 600)}
    assert counts[0] == counts[99] == 1
    assert llava_mini.curriculum_objects(599, steps) == {"min_objects": 1, "max_objects": 6}
    assert llava_mini.curriculum_objects(600, steps) == {} == llava_mini.curriculum_objects(0, 0)
    assert counts[600] >= 2


def test_conversations_label_every_answer_and_only_the_answers():
    """LLaVA-mini's multi-turn instruct samples: one image, the first turn as `encode`, loss on each answer."""
    tokenizer = build_word_tokenizer()
    turns = [("what colour is the star?", "red"), ("where is the star?", "top left"), ("how many red shapes are there?",
                                                                                       "two")]
    ids, labels = encode_conversation(tokenizer, turns, max_tokens=96)
    first, _ = encode(tokenizer, *turns[0], max_tokens=96)
    assert ids[:len(first)] == first and ids.count(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)) == 1
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "red </s> top left </s> two </s>"
    assert tokenizer.decode(ids[len(first):]).startswith("user : where is the star? assistant : top left")
    with pytest.raises(AnyRefInputError, match="use fewer turns"):
        encode_conversation(tokenizer, turns * 4, max_tokens=96)


class _Interrupt(Exception):
    pass


def _dropout_loss(module):
    def loss_at(step):
        x = torch.from_numpy(np.random.default_rng(step).normal(size=(8, 4)).astype(np.float32))
        return torch.nn.functional.dropout(module(x), p=0.3, training=True).pow(2).mean()  # uses torch's RNG
    return loss_at


def test_pretraining_resumes_with_identical_losses(tmp_path):
    from anyref.pretrain.loop import run_loop

    def fresh():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 3)

    settings = dict(steps=10, lr=1e-2, seed=0, warmup_steps=2, progress=False, checkpoint_every=4)
    whole = run_loop(_dropout_loss(module := fresh()), module, run_dir=tmp_path / "whole", **settings)

    def stop_at_six(step, result):
        if step == 6:
            raise _Interrupt
    with pytest.raises(_Interrupt):
        run_loop(_dropout_loss(module := fresh()), module, run_dir=tmp_path / "cut", callback=stop_at_six, **settings)
    with pytest.raises(AnyRefCheckpointError, match="resume"):
        run_loop(_dropout_loss(module := fresh()), module, run_dir=tmp_path / "cut", **settings)
    with pytest.raises(AnyRefCheckpointError, match="other settings"):
        run_loop(_dropout_loss(module := fresh()), module, run_dir=tmp_path / "cut", resume=True,
                 **{**settings, "lr": 2e-2})
    resumed = run_loop(_dropout_loss(module := fresh()), module, run_dir=tmp_path / "cut", resume=True, **settings)
    assert resumed.steps == 10 and resumed.losses == whole.losses  # steps 1-4 from the checkpoint, 5-10 re-run


def test_pretraining_refuses_a_gpu_it_does_not_have(tmp_path):
    from anyref.errors import AnyRefConfigError
    from anyref.pretrain.run import pretrain

    with pytest.raises(AnyRefConfigError, match="CLIP-mini"):
        pretrain("sam", steps=1, out=tmp_path / "sam", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(AnyRefConfigError, match="no CUDA GPU"):
            pretrain("clip", steps=1, out=tmp_path / "clip", device="cuda")


def test_llava_command_records_its_settings_and_losses(tmp_path, monkeypatch):
    import json

    from anyref.pretrain.run import pretrain

    monkeypatch.setattr(llava_mini, "answer_accuracy", lambda model: {"overall": 0.25})  # scoring is tested above
    pretrain("llava", steps=2, out=tmp_path / "llava", progress=False)
    metrics = json.loads((tmp_path / "llava" / "metrics.json").read_text())
    assert metrics["answer_accuracy"] == {"overall": 0.25} and metrics["settings"]["instruct_steps"] == 2
    assert set(metrics["final_loss_mean_last50"]) == set(llava_mini.RECIPE_STAGES) == {"lm", "instruct"}
    assert all(np.isfinite(v) for v in metrics["final_loss_mean_last50"].values())


RECIPE = (clip_mini.CLIPPretrainConfig.steps, clip_mini.CLIPPretrainConfig.region_steps)


@pytest.mark.parametrize("steps, region_steps, expected", [(None, None, RECIPE), (5, None, (5, 0)),
                                                           (5, 7, (5, 7))])
def test_clip_command_runs_the_region_stage_unless_a_quick_look(tmp_path, monkeypatch, steps, region_steps, expected):
    from anyref.pretrain.run import pretrain

    class Planned(Exception):
        pass

    def plan(settings, **_):
        raise Planned(settings.steps, settings.region_steps)

    monkeypatch.setattr(clip_mini, "pretrain_clip", plan)  # the training itself is tested above
    with pytest.raises(Planned) as planned:
        pretrain("clip", steps=steps, region_steps=region_steps, out=tmp_path / "clip", progress=False)
    assert planned.value.args == expected

"""The unified referring representation: placeholders, feature shapes, splicing, bad references."""
import numpy as np
import pytest
import soundfile
import torch

from anyref.data import make_scene, object_crop, sound_for
from anyref.errors import AnyRefInputError
from anyref.model import Batch
from anyref.predict import predict
from anyref.referring import (AUD_REF_FEATURE, AUD_REF_TOKENS, IMG_REF_FEATURE, IMG_REF_TOKENS, Audio, Example, Region,
                              check_box, check_example, example_features, mask_crop, region_features)
from anyref.tokens import AUDIO_QUESTION, EXAMPLE_QUESTION, REGION_QUESTION, encode, segment_question


@pytest.fixture(scope="module")
def scene():
    return make_scene(np.random.default_rng(3), image_size=64)


def test_spans_get_one_placeholder_per_feature(micro_model):
    tok = micro_model.tokenizer
    ids, labels = encode(tok, REGION_QUESTION, "the small red circle <obj>.", max_tokens=96)
    assert ids.count(IMG_REF_FEATURE) == IMG_REF_TOKENS == 16
    start = ids.index(micro_model.ids.img_ref_start)
    assert ids[start + 1:start + 17] == [IMG_REF_FEATURE] * 16 and ids[start + 17] == micro_model.ids.img_ref_end
    assert all(label == -100 for label, i in zip(labels, ids) if i == IMG_REF_FEATURE)
    ids, _ = encode(tok, AUDIO_QUESTION, None, max_tokens=96)
    assert ids.count(AUD_REF_FEATURE) == AUD_REF_TOKENS == 3
    with pytest.raises(AnyRefInputError, match="empty pair"):
        encode(tok, "Can you segment <img.ref> circle </img.ref> in this image?", None, max_tokens=96)


def test_roi_align_of_the_whole_image_equals_the_4x4_pool():
    torch.manual_seed(0)
    features = torch.randn(2, 64, 5)  # (B, 8x8 patches, C)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 16.0, 16.0]])
    regions = region_features(features, boxes, torch.tensor([1, 0]), image_size=32)  # (2, 16, 5)
    assert regions.shape == (2, 16, 5)
    assert torch.allclose(regions[0], example_features(features)[1], atol=1e-6)
    constant = torch.full((1, 64, 5), 3.0)  # interpolation weights sum to one inside the image
    inside = region_features(constant, torch.tensor([[3.0, 5.0, 20.0, 11.0]]), torch.tensor([0]), image_size=32)
    assert torch.allclose(inside, torch.full((1, 16, 5), 3.0), atol=1e-5)


def test_reference_tokens_have_the_paper_shapes(micro_model, scene):
    images = torch.from_numpy(scene.image[None])
    features, _ = micro_model.image_features(images)
    refs = [(Region(scene.objects[0].box), Example(object_crop(scene, 0)), Audio(sound_for("star", seed=0, index=0)))]
    tokens = micro_model.reference_tokens(images, features, refs)
    assert tokens[0].shape == (16 + 16 + 3, micro_model.llama.config.hidden_size)


def test_splice_puts_features_at_the_placeholders(micro_model, scene):
    ids, _ = encode(micro_model.tokenizer, segment_question("<img.ref></img.ref> and <aud.ref></aud.ref>"), None,
                    max_tokens=96)
    features = torch.randn(19, micro_model.llama.config.hidden_size)
    images = torch.from_numpy(scene.image[None])
    embeds, token_ids, _ = micro_model.splice(torch.tensor([ids]), micro_model.image_tokens(images), [features])
    assert embeds.shape[1] == len(ids) - 1 + micro_model.vision.num_patches  # one-for-one: only <image> grows
    slots = ((token_ids[0] == IMG_REF_FEATURE) | (token_ids[0] == AUD_REF_FEATURE)).nonzero()[:, 0]
    assert torch.equal(embeds[0, slots], features)
    with pytest.raises(AnyRefInputError, match="19 reference placeholders but 3"):
        micro_model.splice(torch.tensor([ids]), micro_model.image_tokens(images), [features[:3]])


def test_generated_reference_embedding_equals_teacher_forced(micro_model, scene, forcer):
    tok = micro_model.tokenizer
    refs = (Region(scene.objects[0].box), Audio(sound_for("circle", seed=1, index=2)))
    question = segment_question("<img.ref></img.ref> and <aud.ref></aud.ref>")
    answer_text = "circle <obj>."
    answer = tok(" " + answer_text, add_special_tokens=False).input_ids + [tok.eos_token_id]
    gen = micro_model.generate(torch.from_numpy(scene.image), question, references=refs,
                               logits_processor=forcer(answer))
    ids, labels = encode(tok, question, answer_text, max_tokens=96)
    batch = Batch(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([labels]),
                  torch.from_numpy(scene.image[None]), [torch.from_numpy(scene.objects[0].mask[None]).float()], [refs])
    with torch.no_grad():
        out = micro_model(batch)
    assert (out["obj_embeddings"] - gen.obj_embeddings).abs().max() < 1e-5


def test_gradients_reach_the_audio_projection_not_the_frozen_encoders(scene):
    from anyref import AnyRefModel, preset

    torch.manual_seed(0)
    model = AnyRefModel(preset("micro")).train()
    ids, labels = encode(model.tokenizer, AUDIO_QUESTION, "circle <obj>.", max_tokens=96)
    batch = Batch(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([labels]),
                  torch.from_numpy(scene.image[None]), [torch.from_numpy(scene.objects[0].mask[None]).float()],
                  [(Audio(sound_for("circle", seed=0, index=0)),)])
    model(batch)["loss"].backward()
    assert model.audio_projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.audio.parameters())
    assert all(p.grad is None for p in model.vision.parameters())


def test_predict_accepts_every_modality_alone_and_together(micro_model, scene, tmp_path):
    crop = object_crop(scene, 1)
    sound = sound_for("square", seed=0, index=0)
    wav = tmp_path / "square.wav"
    soundfile.write(str(wav), sound, 16000)
    for kwargs in ({"box": scene.objects[0].box}, {"examples": crop}, {"audio": str(wav)},
                   {"audio": sound, "sample_rate": 16000}, {"box": scene.objects[0].box, "audio": sound,
                                                            "sample_rate": 16000}):
        pred = predict(micro_model, scene.image, max_new_tokens=4, **kwargs)
        assert isinstance(pred.text, str) and pred.masks.shape[1:] == scene.image.shape[:2]
    text = "Can you segment the red circle and <aud.ref></aud.ref> in this image?"
    assert isinstance(predict(micro_model, scene.image, text, audio=sound, sample_rate=16000, max_new_tokens=4).text, str)


def test_few_shot_with_identical_examples_equals_one_shot(micro_model, scene, forcer):
    tok = micro_model.tokenizer
    force = forcer(tok(" circle <obj>.", add_special_tokens=False).input_ids + [tok.eos_token_id])
    crop = object_crop(scene, 0)

    class Forced:  # predict() on a model whose decoding is scripted, so both runs produce one mask
        def __getattr__(self, name):
            return getattr(micro_model, name)

        def generate(self, *args, **kwargs):
            return micro_model.generate(*args, logits_processor=force, **kwargs)

    one = predict(Forced(), scene.image, examples=[crop])
    sam_calls = []
    hook = micro_model.sam.image_encoder.register_forward_hook(lambda *_: sam_calls.append(1))
    try:
        few = predict(Forced(), scene.image, examples=[crop, crop])
    finally:
        hook.remove()
    assert one.masks.shape == few.masks.shape == (1, 64, 64)
    assert np.abs(one.mask_logits - few.mask_logits).max() < 1e-3
    assert len(sam_calls) == 1  # two grounded passes, one SAM encoding of the query image


@pytest.mark.parametrize("box, message", [((70, 0, 90, 20), "outside"), ((-1, 0, 20, 20), "outside"),
                                          ((10, 10, 11, 30), "degenerate"), ((30, 30, 10, 10), "inverted"),
                                          ((1, 2, 3), "four numbers"), ((0, 0, float("nan"), 4), "non-finite")])
def test_bad_boxes_are_clear_errors(micro_model, scene, box, message):
    with pytest.raises(AnyRefInputError, match=message):
        check_box(box, height=64, width=64)
    with pytest.raises(AnyRefInputError, match=message):
        predict(micro_model, scene.image, box=box)


@pytest.mark.parametrize("crop, message", [(np.zeros((0, 5, 3), np.uint8), "empty"),
                                           (np.zeros((8, 8, 3), np.uint8), "all black"),
                                           (np.zeros((8, 8), np.uint8), "shape"),
                                           (np.ones((8, 8, 3), np.float32), "uint8")])
def test_bad_example_crops_are_clear_errors(micro_model, scene, crop, message):
    with pytest.raises(AnyRefInputError, match=message):
        check_example(crop)
    with pytest.raises(AnyRefInputError, match=message):
        predict(micro_model, scene.image, examples=crop)


def test_mask_crop_blacks_out_the_background(scene):
    obj = scene.objects[0]
    crop = mask_crop(scene.image, obj.mask, padding=0.0)
    ys, xs = np.nonzero(obj.mask)
    inside = obj.mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert crop.shape[:2] == inside.shape and (crop[~inside] == 0).all() and (crop[inside] > 0).any()
    with pytest.raises(AnyRefInputError, match="empty"):
        mask_crop(scene.image, np.zeros_like(obj.mask))


def test_bad_audio_is_a_clear_error_or_resampled(micro_model, scene):
    sound = sound_for("star", seed=0, index=0)
    for audio, rate, message in ((np.zeros(80000, np.float32), 16000, "silent"), (sound[:4000], 16000, "lasts 0.25 s"),
                                 (np.tile(sound, 13), 16000, "lasts 65.00 s"), (np.stack([sound, sound]), 16000, "channel")):
        with pytest.raises(AnyRefInputError, match=message):
            predict(micro_model, scene.image, audio=audio, sample_rate=rate)
    import torchaudio

    at_44k = torchaudio.functional.resample(torch.from_numpy(sound), orig_freq=16000, new_freq=44100).numpy()
    assert isinstance(predict(micro_model, scene.image, audio=at_44k, sample_rate=44100, max_new_tokens=3).text, str)


def test_placeholder_and_reference_mismatch_is_a_clear_error(micro_model, scene):
    crop = object_crop(scene, 0)
    with pytest.raises(AnyRefInputError, match="reference slots"):
        predict(micro_model, scene.image, "Can you segment the red circle in this image?", examples=crop)
    with pytest.raises(AnyRefInputError, match="reference slots"):
        predict(micro_model, scene.image, EXAMPLE_QUESTION)
    with pytest.raises(AnyRefInputError, match="reference slots"):
        predict(micro_model, scene.image, AUDIO_QUESTION, examples=crop)
    with pytest.raises(AnyRefInputError, match="nothing to ask"):
        predict(micro_model, scene.image)


def test_few_shot_passes_with_different_mask_counts_give_one_averaged_mask(micro_model, scene, forcer):
    tok = micro_model.tokenizer
    scripts = iter([" circle <obj>.", " circle ."])  # the second pass answers without <obj>

    class Scripted:
        def __getattr__(self, name):
            return getattr(micro_model, name)

        def generate(self, *args, **kwargs):
            answer = tok(next(scripts), add_special_tokens=False).input_ids + [tok.eos_token_id]
            return micro_model.generate(*args, logits_processor=forcer(answer), **kwargs)

    crop = object_crop(scene, 0)
    one = predict(Scripted(), scene.image, examples=[crop])
    scripts = iter([" circle <obj>.", " circle ."])
    few = predict(Scripted(), scene.image, examples=[crop, crop])
    assert few.masks.shape == (1, 64, 64)
    half = 1 / (1 + np.exp(-one.mask_logits[0])) / 2  # the second pass contributes an empty map
    assert np.abs(1 / (1 + np.exp(-few.mask_logits[0])) - half).max() < 1e-4

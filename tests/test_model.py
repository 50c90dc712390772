"""The model's structure and mechanics: tokens, splicing, several masks, mixed batches, generation, save/load."""
import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam

from anyref import AnyRefModel, Batch, preset
from anyref.batching import collate
from anyref.sam import decode_masks, sam_inputs
from anyref.tokens import SPECIAL_TOKENS, encode, segment_answer, segment_question


def test_special_tokens_are_single_ids(micro_model):
    for token in SPECIAL_TOKENS:
        assert len(micro_model.tokenizer(token, add_special_tokens=False).input_ids) == 1


def test_answer_template_repeats_expression():
    assert segment_question("the red circle") == "Can you segment the red circle in this image?"
    assert segment_answer("the red circle") == "the red circle <obj>."


def test_splice_inserts_one_token_per_patch(micro_model, samples):
    batch = collate(samples, micro_model.tokenizer, max_tokens=64)
    tokens = micro_model.image_tokens(batch.images)
    embeds, ids, where = micro_model.splice(batch.input_ids, tokens)
    num = micro_model.vision.num_patches
    assert tokens.shape == (len(samples), num, micro_model.llama.config.hidden_size)
    assert embeds.shape[1] == batch.input_ids.shape[1] + num - 1
    for b, p in enumerate(where):
        assert torch.equal(embeds[b, p:p + num], tokens[b])
        assert (ids[b, p:p + num] == -1).all()


def test_paper_freezing_and_lora(micro_model):
    trainable = {n for n, p in micro_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert not any(n.startswith("vision.") for n in trainable)  # CLIP and projector frozen
    assert not any(n.startswith("sam.image_encoder") for n in trainable)
    assert any(n.startswith("sam.mask_decoder") for n in trainable)
    assert any(n.startswith("obj_mlp") for n in trainable)
    assert any("embed_tokens" in n for n in trainable) and any("lm_head" in n for n in trainable)
    assert not any("q_proj.base_layer" in n or "mlp.gate_proj" in n for n in trainable)


def test_sam_batched_decoder_matches_segment_anything(micro_model):
    sam: Sam = micro_model.sam
    images = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        pixels, _ = sam_inputs(sam, images)
        embeddings = sam.image_encoder(pixels)
        prompts = torch.randn(3, sam.prompt_encoder.embed_dim)
        ours = decode_masks(sam, embeddings, torch.tensor([0, 0, 1]), prompts)
        dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        for image, members in ((0, [0, 1]), (1, [2])):
            theirs, _ = sam.mask_decoder(image_embeddings=embeddings[image:image + 1],
                                         image_pe=sam.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=prompts[members][:, None],
                                         dense_prompt_embeddings=dense.expand(len(members), -1, *embeddings.shape[-2:]),
                                         multimask_output=False)
            assert (ours[members] - theirs).abs().max() < 1e-5


def _two_object_batch(model, sample):
    """One sample whose answer holds two <obj> tokens, with two target masks."""
    scene = sample.scene
    question = "Can you segment the circle in this image?"
    answer = "the circle <obj>, the square <obj>."
    ids, labels = encode(model.tokenizer, question, answer, max_tokens=64)
    masks = torch.from_numpy(scene.masks[:2].astype(np.float32))
    return ids, labels, masks


def test_several_obj_give_several_masks_and_mixed_batches(micro_model, samples):
    ids2, labels2, masks2 = _two_object_batch(micro_model, samples[0])
    plain = collate(samples[1:3], micro_model.tokenizer, max_tokens=64)
    width = max(len(ids2), plain.input_ids.shape[1])
    pad = micro_model.tokenizer.pad_token_id

    def row(x, value):
        return torch.tensor(list(x) + [value] * (width - len(x)))

    batch = Batch(
        input_ids=torch.stack([row(ids2, pad)] + [row(r[r != pad].tolist(), pad) for r in plain.input_ids]),
        attention_mask=torch.stack([row([1] * len(ids2), 0)] + [row([1] * int(m.sum()), 0) for m in plain.attention_mask]),
        labels=torch.stack([row(labels2, -100)] + [row(r[m.bool()].tolist(), -100) for r, m in
                                                   zip(plain.labels, plain.attention_mask)]),
        images=torch.cat([torch.from_numpy(samples[0].scene.image)[None], plain.images]),
        masks=[masks2, plain.masks[0], None],  # the last sample has an <obj> but no mask supervision
    )
    out = micro_model(batch)
    assert [q.batch for q in out["queries"]] == [0, 0, 1, 2]
    assert out["mask_logits"].shape == (3, 64, 64)  # two masks for sample 0, one for sample 1, none supervised for 2
    assert out["obj_embeddings"].shape[0] == 4
    assert torch.isfinite(out["loss"]) and out["bce"] > 0 and out["dice"] > 0


def test_batch_without_masks_uses_text_loss_only(micro_model, samples):
    batch = collate(samples[:2], micro_model.tokenizer, max_tokens=64)
    batch.masks = [None, None]
    out = micro_model(batch)
    assert out["mask_logits"] is None and out["bce"] == 0 and torch.equal(out["loss"], out["ce"])


def test_mask_count_mismatch_is_a_clear_error(micro_model, samples):
    batch = collate(samples[:1], micro_model.tokenizer, max_tokens=64)
    batch.masks = [torch.zeros(2, 64, 64)]
    with pytest.raises(ValueError, match="1 <obj> tokens but 2 target masks"):
        micro_model(batch)


def test_generated_mask_embedding_equals_teacher_forced(micro_model, samples, forcer):
    sample = samples[0]
    tok = micro_model.tokenizer
    answer = tok(" " + segment_answer(sample.expression), add_special_tokens=False).input_ids + [tok.eos_token_id]
    image = torch.from_numpy(sample.scene.image)
    gen = micro_model.generate(image, segment_question(sample.expression), logits_processor=forcer(answer))
    assert gen.token_ids == answer[:-1] and gen.mask_logits.shape == (1, 64, 64)
    batch = collate([sample], tok, max_tokens=64)
    with torch.no_grad():
        out = micro_model(batch)
    assert (out["obj_embeddings"] - gen.obj_embeddings).abs().max() < 1e-5
    assert (out["mask_logits"] - gen.mask_logits).abs().max() < 1e-4


def test_save_and_load_roundtrip(micro_model, samples, tmp_path):
    micro_model.save_pretrained(tmp_path / "ckpt")
    loaded = AnyRefModel.from_pretrained(tmp_path / "ckpt").eval()
    batch = collate(samples[:2], micro_model.tokenizer, max_tokens=64)
    with torch.no_grad():
        a, b = micro_model(batch), loaded(batch)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["mask_logits"], b["mask_logits"])
    with pytest.raises(ValueError, match="not empty"):
        micro_model.save_pretrained(tmp_path / "ckpt")


def test_predict_returns_text_and_masks(micro_model, samples):
    from anyref.predict import predict

    pred = predict(micro_model, samples[0].scene.image, "Can you segment the red circle in this image?")
    assert isinstance(pred.text, str)
    assert pred.masks.shape[1:] == (64, 64) and pred.masks.dtype == bool
    assert len(pred.masks) == pred.text.count("<obj>")


def test_paper_preset_matches_the_paper():
    config = preset("paper")
    assert (config.llm.lora_r, config.llm.lora_alpha, config.refocus_weight) == (8, 16, 0.1)
    assert (config.ce_weight, config.bce_weight, config.dice_weight) == (1.0, 2.0, 0.5)
    assert (config.vision.image_size, config.vision.patch_size, config.sam.image_size) == (224, 14, 1024)
    assert not (config.trainable.vision or config.trainable.projector or config.trainable.sam_encoder)

"""The miniature's locator (anyref.locator): its map, its loss, its dense prompt reaching SAM, and the model with it."""
import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.errors import AnyRefCheckpointError, AnyRefConfigError
from anyref.batching import collate
from anyref.locator import Locator, cell_cover, dense_prompt, locator_loss, top_cell_on_target
from anyref.refocus import ObjQuery
from anyref.tokens import segment_answer, segment_question


@pytest.fixture(scope="module")
def located_model():
    """A micro AnyRef with the locator on, in eval mode."""
    torch.manual_seed(0)
    return AnyRefModel(preset("micro", locator=True)).eval()


def test_cell_cover_is_the_share_of_each_cell():
    masks = torch.zeros(1, 8, 8)
    masks[0, :4, :4] = 1  # the top-left cell of a 2 x 2 grid, whole
    masks[0, 4:6, 4:8] = 1  # half of the bottom-right cell
    assert torch.equal(cell_cover(masks, 2), torch.tensor([[[1.0, 0.0], [0.0, 0.5]]]))


def test_locator_map_shape_and_square_grid_check():
    locator = Locator(16, dim=8)
    assert locator(torch.randn(3, 16), torch.randn(3, 9, 16)).shape == (3, 3, 3)
    with pytest.raises(ValueError, match="square grid"):
        locator(torch.randn(3, 16), torch.randn(3, 8, 16))


def test_locator_learns_to_find_the_matching_token():
    """The bilinear head can learn a search: the target token is the one equal to the query (BCE on one-hot cover)."""
    torch.manual_seed(0)
    tokens = torch.randn(256, 16, 24)  # (N, P, D)
    where = torch.randint(0, 16, (256,))
    obj = tokens[torch.arange(256), where] + 0.1 * torch.randn(256, 24)
    masks = torch.nn.functional.one_hot(where, 16).float().view(256, 4, 4)  # a 4 x 4 "image", one pixel per cell
    locator = Locator(24, dim=24)
    optimiser = torch.optim.Adam(locator.parameters(), lr=1e-2)
    first = locator_loss(locator(obj, tokens), masks).item()
    for _ in range(300):
        loss = locator_loss(locator(obj, tokens), masks)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    found = locator(obj, tokens).flatten(1).argmax(1)
    assert loss.item() < first / 2 and (found == where).float().mean() > 0.9


def test_ranking_map_is_a_log_probability_and_its_loss_is_cross_entropy():
    locator = Locator(16, dim=8, ranking=True)
    logits = locator(torch.randn(3, 16), torch.randn(3, 9, 16))  # (3, 3, 3)
    torch.testing.assert_close((logits.flatten(1) - torch.log(torch.tensor(9.0))).logsumexp(1), torch.zeros(3))
    where = torch.tensor([0, 4, 8])
    masks = torch.nn.functional.one_hot(where, 9).float().view(3, 3, 3)  # one pixel per cell
    torch.testing.assert_close(locator_loss(logits, masks, kind="softmax"),
                               torch.nn.functional.cross_entropy(logits.flatten(1), where))
    with pytest.raises(ValueError, match="unknown locator loss"):
        locator_loss(logits, masks, kind="hinge")
    with pytest.raises(AnyRefConfigError, match="locator_loss"):
        AnyRefModel(preset("micro", locator=True, locator_loss="hinge"))


def test_ranking_locator_learns_a_superlative():
    """"The leftmost of its kind": the target depends on the other tokens of its kind (BCE's argmax learns this toy
    too; on ShapeScenes' frozen features the ranking finds more targets, research/results/locator_probe_softmax.json)."""
    torch.manual_seed(0)
    n, side, kinds = 512, 4, 4
    kind = torch.randint(0, kinds, (n, side * side))  # (N, P): the kind of object in each cell
    column = torch.arange(side * side) % side  # (P,)
    tokens = torch.cat([torch.nn.functional.one_hot(kind, kinds).float(),
                        column.float().expand(n, -1)[..., None] / side], dim=-1)  # (N, P, kinds + 1)
    wanted = kind[:, 0]  # a kind present in every scene
    leftmost = torch.where(kind == wanted[:, None], column, side).argmin(1)  # the first cell in the leftmost column
    masks = torch.nn.functional.one_hot(leftmost, side * side).float().view(n, side, side)
    obj = torch.nn.functional.one_hot(wanted, kinds).float()
    locator = Locator(kinds, key_size=kinds + 1, dim=8, ranking=True)
    optimiser = torch.optim.Adam(locator.parameters(), lr=3e-2)
    for _ in range(400):
        loss = locator_loss(locator(obj, tokens), masks, kind="softmax")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    found = locator(obj, tokens).flatten(1).argmax(1)
    hit = column[found] == column[leftmost]
    assert (hit & (kind.gather(1, found[:, None])[:, 0] == wanted)).float().mean() > 0.9


def test_dense_prompt_reaches_the_mask(located_model, samples):
    """A different map gives a different mask: SAM's decoder reads the dense prompt."""
    sam = located_model.sam
    side = int(round(located_model.image_tokens(torch.from_numpy(samples[0].scene.image[None])).shape[1] ** 0.5))
    maps = torch.stack([torch.full((side, side), -4.0), torch.full((side, side), 4.0)])
    assert dense_prompt(sam, maps).shape == (2, sam.prompt_encoder.embed_dim, *sam.prompt_encoder.image_embedding_size)
    image = torch.from_numpy(samples[0].scene.image[None]).expand(2, -1, -1, -1)
    queries = [ObjQuery(batch=b, query=0, start=0) for b in (0, 1)]  # masks_for reads only the batch index
    embedding = torch.randn(1, located_model.config.llm.hidden_size).expand(2, -1)
    with torch.no_grad():
        masks = located_model.masks_for(image, embedding, queries, located=maps)
    assert (masks[0] - masks[1]).abs().max() > 1e-3


def test_forward_reports_and_trains_the_locator(located_model, samples, micro_model):
    batch = collate(samples, located_model.tokenizer, max_tokens=64)
    located_model.train()
    out = located_model(batch)
    located_model.eval()
    assert out["locate"] > 0
    weight = located_model.config.locator_weight
    assert torch.isclose(out["loss"], out["ce"] + 2.0 * out["bce"] + 0.5 * out["dice"] + weight * out["locate"])
    out["loss"].backward()
    assert located_model.locator.query.weight.grad.abs().sum() > 0
    assert located_model.sam.prompt_encoder.mask_downscaling[0].weight.grad.abs().sum() > 0
    located_model.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert "locate" not in micro_model(batch)  # the paper's model has no locator


def test_generation_and_save_load_keep_the_locator(located_model, samples, forcer, tmp_path):
    sample = samples[0]
    tok = located_model.tokenizer
    answer = tok(" " + segment_answer(sample.expression), add_special_tokens=False).input_ids + [tok.eos_token_id]
    gen = located_model.generate(torch.from_numpy(sample.scene.image), segment_question(sample.expression),
                                 logits_processor=forcer(answer))
    with torch.no_grad():
        out = located_model(collate([sample], tok, max_tokens=64))
    assert (out["mask_logits"] - gen.mask_logits).abs().max() < 1e-4
    located_model.save_pretrained(tmp_path / "located")
    loaded = AnyRefModel.from_pretrained(tmp_path / "located").eval()
    assert loaded.config.locator and loaded.locator is not None
    with torch.no_grad():
        assert torch.equal(loaded(collate([sample], tok, max_tokens=64))["mask_logits"], out["mask_logits"])


def test_start_from_adds_a_fresh_locator_and_keeps_the_rest(micro_model, samples, tmp_path):
    micro_model.save_pretrained(tmp_path / "plain")
    model = AnyRefModel.start_from(tmp_path / "plain", locator=True).eval()
    assert model.locator is not None
    plain = micro_model.state_dict()
    assert all(torch.equal(value, plain[key]) for key, value in model.state_dict().items() if key in plain)
    assert {key for key in model.state_dict() if key not in plain} == {f"locator.{name}" for name in
                                                                       ("query.weight", "query.bias", "key.weight",
                                                                        "key.bias", "bias")}
    with pytest.raises(AnyRefCheckpointError, match="does not fit"):
        AnyRefModel.start_from(tmp_path / "plain", max_text_tokens=96, llm=dict(micro_model.config.to_dict()["llm"],
                                                                                 hidden_size=64))


def test_top_cell_on_target_reads_the_highest_cell():
    masks = torch.zeros(2, 8, 8)
    masks[:, :4, :4] = 1  # both targets fill the top-left cell of a 2 x 2 grid
    logits = torch.tensor([[[5.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 5.0]]])
    assert top_cell_on_target(logits, masks).tolist() == [True, False]


def test_locator_feedback_needs_the_locator():
    with pytest.raises(AnyRefConfigError, match="turn locator on"):
        AnyRefModel(preset("micro", locator_feedback=True))


def test_locator_feedback_adds_the_pooled_tokens_and_trains_from_zero(located_model, samples):
    """`ground` adds W (softmax(map) . tokens) to each `<obj>` embedding; W starts at zero (the plain locator's
    masks exactly) and gets a gradient from the mask loss."""
    torch.manual_seed(0)
    fed = AnyRefModel(preset("micro", locator=True, locator_feedback=True)).eval()
    missing, unexpected = fed.load_state_dict(located_model.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"found_value.weight", "found_value.bias"}
    batch = collate(samples, fed.tokenizer, max_tokens=64)
    with torch.no_grad():
        assert torch.equal(fed(batch)["mask_logits"], located_model(batch)["mask_logits"])
    tokens, embeddings = torch.randn(2, 4, 32), torch.randn(3, 32)  # (B, P, D), (N, D); micro: a 2 x 2 grid
    queries = [ObjQuery(batch=b, query=0, start=0) for b in (0, 1, 1)]
    with torch.no_grad():
        fed.found_value.weight.copy_(torch.eye(32))
        grounded, located = fed.ground(embeddings, tokens, queries)
    pooled = torch.einsum("np,npd->nd", located.flatten(1).softmax(1), tokens[[0, 1, 1]])  # (N, D)
    torch.testing.assert_close(grounded, embeddings + pooled + fed.found_value.bias)
    with torch.no_grad():
        fed.found_value.weight.zero_()
    fed.train()
    fed(batch)["loss"].backward()
    fed.eval()
    assert fed.found_value.weight.grad.abs().sum() > 0 and fed.found_value.weight.requires_grad

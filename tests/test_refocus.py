"""Refocusing (Eq. 2): the SDPA-compatible fast path equals the eager-attention reference, and is differentiable."""
import torch

from anyref.batching import collate
from anyref.refocus import ObjQuery, attention_rows, capture_last_layer, refocus, refocus_weights


def _inputs(model, samples):
    batch = collate(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)
    embeds, token_ids, where = model.splice(batch.input_ids, model.image_tokens(batch.images))
    num = embeds.shape[1] - batch.input_ids.shape[1] + 1
    attention = model._expand(batch.attention_mask, where, num, 1)
    labels = model._expand(batch.labels, where, num, -100)
    starts = [int((row != -100).nonzero()[0]) for row in labels]
    return embeds, attention, model.obj_queries(token_ids, starts)


def test_fast_rows_equal_eager_attention(micro_model, samples):
    llama = micro_model.llama
    embeds, attention, queries = _inputs(micro_model, samples)
    assert len(queries) == len(samples)
    with torch.no_grad(), capture_last_layer(llama.model) as record:
        hidden = llama.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
    cfg = llama.config
    fast = attention_rows(record[0], queries, num_heads=cfg.num_attention_heads,
                          num_kv_heads=cfg.num_key_value_heads, key_padding=attention)
    llama.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            eager_out = llama.model(inputs_embeds=embeds, attention_mask=attention, output_attentions=True)
    finally:
        llama.set_attn_implementation("sdpa")
    last = eager_out.attentions[-1]  # (B, H, L, L)
    reference = torch.stack([last[q.batch].mean(0)[q.query] for q in queries])  # (N, L)
    assert (fast - reference).abs().max().item() < 1e-5
    weights = refocus_weights(fast, queries)
    for row, q in zip(weights, queries):  # only answer positions before the query carry weight, summing to one
        assert row[: q.start].abs().sum() == 0 and row[q.query:].abs().sum() == 0
        assert abs(row.sum().item() - 1.0) < 1e-5
    # the official code's eager formula, end to end: h_obj + 0.1 * sum_i (a_i / sum a) h_i
    ref_w = torch.zeros_like(reference)
    for i, q in enumerate(queries):
        ref_w[i, q.start:q.query] = reference[i, q.start:q.query] / reference[i, q.start:q.query].sum()
    expected = torch.stack([hidden[q.batch, q.query] + 0.1 * ref_w[i] @ hidden[q.batch]
                            for i, q in enumerate(queries)])
    got = refocus(hidden, weights, queries, weight=0.1)
    assert (got - expected).abs().max().item() < 1e-5
    assert (eager_out.last_hidden_state - hidden).abs().max().item() < 1e-5


def test_gradients_flow_through_attention_weights(micro_model, samples):
    llama = micro_model.llama
    embeds, attention, queries = _inputs(micro_model, samples[:2])
    with torch.no_grad(), capture_last_layer(llama.model) as record:
        hidden = llama.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
    qk = record[0]
    qk.q.requires_grad_(True)  # q enters Eq. 2 only through the attention weights
    cfg = llama.config
    rows = attention_rows(qk, queries, num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads)
    out = refocus(hidden, refocus_weights(rows, queries), queries, weight=0.1)
    out.pow(2).sum().backward()
    assert qk.q.grad is not None and qk.q.grad.abs().sum() > 0


def test_no_preceding_answer_token_leaves_embedding_unchanged():
    hidden = torch.randn(1, 6, 4)
    query = [ObjQuery(batch=0, query=3, start=3)]
    rows = torch.full((1, 6), 1 / 4)
    weights = refocus_weights(rows, query)
    assert weights.abs().sum() == 0
    assert torch.equal(refocus(hidden, weights, query, weight=0.1), hidden[0, 3][None])


def test_learnable_lambda_trains_saves_and_loads(samples, tmp_path):
    from anyref import AnyRefModel, preset

    torch.manual_seed(0)
    model = AnyRefModel(preset("micro", refocus_weight=1.0, refocus_learnable=True))
    assert model.refocus_lambda.requires_grad and float(model.refocus_lambda.detach()) == 1.0
    batch = collate(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)
    out = model(batch)
    out["loss"].backward()
    assert model.refocus_lambda.grad is not None and float(model.refocus_lambda.grad.abs()) > 0
    with torch.no_grad():
        model.refocus_lambda.fill_(0.37)
    loaded = AnyRefModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert float(loaded.refocus_lambda.detach()) == float(model.refocus_lambda.detach())
    fixed = AnyRefModel(preset("micro"))
    assert fixed.refocus_lambda is None and "refocus_lambda" not in dict(fixed.named_parameters())

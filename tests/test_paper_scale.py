"""The paper preset at full size on the meta device: exact parameter counts per part and the memory estimate."""
import json

import pytest

from anyref import paper_scale
from anyref.paper_scale import GIB, Setup, memory_per_gpu, model_state_bytes, parameter_table

LLAMA_HIDDEN, LLAMA_MLP, LLAMA_LAYERS = 4096, 11008, 32


@pytest.fixture(scope="module")
def paper():
    """The paper-size AnyRef on the meta device and its parameter table."""
    model = paper_scale.build_paper_model()
    return model, {row.name: row for row in parameter_table(model)}


def test_built_on_meta_without_memory(paper):
    model, _ = paper
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_clip_vit_l14_count_matches_its_architecture(paper):
    _, rows = paper
    width, mlp, layers, patches = 1024, 4096, 24, (224 // 14) ** 2
    embeddings = 3 * 14 * 14 * width + width + (patches + 1) * width  # patch conv (no bias), CLS, positions
    layer = 4 * (width * width + width) + (width * mlp + mlp) + (mlp * width + width) + 4 * width
    assert rows["CLIP ViT-L/14 (vision encoder)"].total == embeddings + 2 * 2 * width + layers * layer
    assert rows["CLIP ViT-L/14 (vision encoder)"].trainable == 0


def test_llama_7b_and_lora_counts(paper):
    model, rows = paper
    layer = 4 * LLAMA_HIDDEN ** 2 + 3 * LLAMA_HIDDEN * LLAMA_MLP + 2 * LLAMA_HIDDEN
    assert rows["LLaMA-7B decoder (LLaVA)"].total == LLAMA_LAYERS * layer + LLAMA_HIDDEN
    vocab = model.llama.config.vocab_size
    assert vocab == paper_scale.LLAMA_VOCAB + 6  # <image>, <obj> and the four reference tokens
    # with LLaMA's own 32000 tokens the whole LLM is the well-known 6.74B
    assert rows["LLaMA-7B decoder (LLaVA)"].total + 2 * 32000 * LLAMA_HIDDEN == 6_738_415_616
    lora = rows["LoRA r8 a16 on q_proj, v_proj"]
    assert lora.total == lora.trainable == LLAMA_LAYERS * 2 * (8 * LLAMA_HIDDEN + LLAMA_HIDDEN * 8)
    assert rows["LLaMA token embeddings + LM head"].trainable == 2 * vocab * LLAMA_HIDDEN


def test_frozen_and_trainable_parts_follow_the_paper(paper):
    _, rows = paper
    frozen = ["CLIP ViT-L/14 (vision encoder)", "vision projection (LLaVA mm_projector)", "LLaMA-7B decoder (LLaVA)",
              "SAM-H image encoder", "ImageBind-H audio branch"]
    assert all(rows[name].trainable == 0 for name in frozen)
    trained = ["SAM prompt encoder + mask decoder", "audio projection", "gamma (<obj> MLP)"]
    assert all(rows[name].trainable == rows[name].total > 0 for name in trained)
    assert rows["ImageBind-H audio branch"].total == pytest.approx(86e6, rel=0.01)
    assert rows["SAM-H image encoder"].total == pytest.approx(637e6, rel=0.01)


def test_trainable_share_against_the_papers_claim(paper):
    _, rows = paper
    trainable = sum(r.trainable for r in rows.values())
    total = sum(r.total for r in rows.values())
    assert 0.03 < trainable / total < 0.045  # 3.75 %: about half of the paper's 565M / 7 %
    twice = paper_scale.double_counted_embeddings(list(rows.values()))
    assert twice["trainable"] == pytest.approx(paper_scale.PAPER_TRAINABLE, rel=0.03)
    assert twice["share"] == pytest.approx(paper_scale.PAPER_SHARE, abs=0.005)


def test_zero_stages_partition_more_and_more(paper):
    model, rows = paper
    table = list(rows.values())
    stages = [row["bytes"] for row in paper_scale.stage_table(model, table=table)]
    assert stages == sorted(stages, reverse=True) and len(set(stages)) == 4
    trainable = sum(r.trainable for r in table)
    frozen = sum(r.total - r.trainable for r in table)
    assert model_state_bytes(stage=2, trainable=trainable, frozen=frozen, gpus=8) == \
        2 * frozen + 2 * trainable + 18 * trainable // 8
    with pytest.raises(ValueError, match="stage must be"):
        model_state_bytes(stage=4, trainable=1, frozen=1, gpus=1)


def test_memory_verdicts(paper):
    model, rows = paper
    table = list(rows.values())
    recipe = memory_per_gpu(model, Setup("recipe"), table=table)
    assert recipe["fits"] and recipe["global_batch"] == 384
    assert 16 * GIB < recipe["peak"] < 32 * GIB
    unchanged = memory_per_gpu(model, Setup("one GPU", gpus=1, gpu_bytes=24 * GIB), table=table)
    assert not unchanged["fits"]
    advice = memory_per_gpu(model, Setup("advice", gpus=1, micro_batch=1, accumulation=384, offload_optimizer=True,
                                         reduce_bucket_size=5e7, gpu_bytes=24 * GIB), table=table)
    assert advice["fits"] and advice["global_batch"] == recipe["global_batch"]
    no_checkpointing = memory_per_gpu(model, Setup("plain", checkpointing=False), table=table)
    assert no_checkpointing["llm_activations"] > 10 * recipe["llm_activations"]


def test_command_writes_the_report(tmp_path, capsys):
    out = tmp_path / "paper_scale.json"
    assert paper_scale.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["total"] == sum(part["total"] for part in report["parts"])
    assert len(report["memory"]) == len(paper_scale.default_setups())
    assert "565M" in capsys.readouterr().out

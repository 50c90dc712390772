"""The paper's recipe and the miniature's full-LLM deviation decide what trains."""
import pytest

from anyref import AnyRefModel, preset
from anyref.config import with_recipe
from anyref.errors import AnyRefConfigError


def trainable_names(recipe: str) -> set[str]:
    model = AnyRefModel(with_recipe(preset("micro"), recipe))
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_paper_recipe_trains_lora_not_the_llm_weights_or_projector():
    names = trainable_names("paper")
    assert any("lora_" in n for n in names)
    assert not any(n.startswith("llm.") and "lora_" not in n and "embed" not in n and "lm_head" not in n
                   for n in names)
    assert not any(n.startswith("vision.projector") for n in names)


def test_full_llm_recipe_trains_every_llm_weight_and_the_projector():
    names = trainable_names("full-llm")
    assert not any("lora_" in n for n in names)
    assert any(n.startswith("llm.") and "self_attn.q_proj" in n for n in names)
    assert any(n.startswith("llm.") and "mlp" in n for n in names)
    assert any(n.startswith("vision.projector") for n in names)
    assert not any(n.startswith("vision.clip") or n.startswith("sam.image_encoder") for n in names)


def test_unknown_recipe_is_refused():
    with pytest.raises(AnyRefConfigError, match="unknown recipe"):
        with_recipe(preset("micro"), "everything")


def test_cli_train_takes_the_recipe(tmp_path, capsys):
    from anyref.cli import main

    out = tmp_path / "full"
    assert main(["train", "--preset", "micro", "--recipe", "full-llm", "--steps", "2", "--batch-size", "2",
                 "--image-size", "64", "--out", str(out)]) == 0
    saved = AnyRefModel.from_pretrained(out)
    assert not saved.config.llm.use_lora and saved.config.trainable.llm_full and saved.config.trainable.projector
    capsys.readouterr()
    assert main(["train", "--preset", "micro", "--recipe", "everything", "--out", str(tmp_path / "x")]) == 2
    assert "full-llm" in capsys.readouterr().err

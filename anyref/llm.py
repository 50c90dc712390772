"""The Llama language model (LLaVA's LLM), with LoRA on q_proj / v_proj through peft (Sec. 3.2.1)."""
from __future__ import annotations

from contextlib import contextmanager

from .checkpoints import check_llama_folder
from .config import LLMConfig
from .errors import AnyRefCheckpointError
from .paths import resolve
from .weights import from_pretrained_folder


@contextmanager
def quiet_transformers():
    """Silence transformers' loading reports (e.g. the unused text tower of a CLIP folder) inside the block."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def build_llama(config: LLMConfig, *, vocab_size: int, pad_token_id: int, eos_token_id: int, bos_token_id: int | None):
    """A LlamaForCausalLM from a local folder or a fresh config, with embeddings resized to the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if config.pretrained_path:
        folder = resolve(config.pretrained_path)
        if not folder.is_dir():
            raise AnyRefCheckpointError(f"LLM folder {str(folder)!r} does not exist")
        check_llama_folder(folder)  # transformers would only warn about missing keys and start them random
        with quiet_transformers():
            model = from_pretrained_folder(
                lambda: LlamaForCausalLM.from_pretrained(str(folder), attn_implementation="sdpa"), folder, "LLM folder")
        model.resize_token_embeddings(vocab_size)
    else:
        llama_config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads, max_position_embeddings=config.max_positions,
            pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=bos_token_id,
            tie_word_embeddings=False, attn_implementation="sdpa",
        )
        model = LlamaForCausalLM(llama_config)
    return model


def add_lora(model, config: LLMConfig):
    """Wrap the LLM with LoRA adapters on every q_proj and v_proj (r=8, alpha=16 in the paper)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=["q_proj", "v_proj"], bias="none")
    return get_peft_model(model, lora)

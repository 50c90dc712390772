"""The Llama language model (LLaVA's LLM), with LoRA on q_proj / v_proj through peft (Sec. 3.2.1)."""
from __future__ import annotations

from pathlib import Path

from .config import LLMConfig
from .errors import AnyRefCheckpointError


def build_llama(config: LLMConfig, *, vocab_size: int, pad_token_id: int, eos_token_id: int, bos_token_id: int | None):
    """A LlamaForCausalLM from a local folder or a fresh config, with embeddings resized to the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if config.pretrained_path:
        if not Path(config.pretrained_path).is_dir():
            raise AnyRefCheckpointError(f"LLM folder {config.pretrained_path!r} does not exist")
        model = LlamaForCausalLM.from_pretrained(config.pretrained_path, attn_implementation="sdpa")
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

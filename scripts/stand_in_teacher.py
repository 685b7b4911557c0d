"""Save a randomly initialised model with a paper teacher's exact shapes, as a local checkpoint.

Memory and throughput depend on shapes, not weights: a stand-in sizes a GPU box for a paper preset before
(or without) downloading the teacher. Point the preset at it with
`--override '{"teacher.source": "hub", "teacher.name": "<out>"}'`. Its perplexities mean nothing.

    python scripts/stand_in_teacher.py qwen3-4b --tokenizer <dir with a tokenizer> --out /tmp/qwen3-4b-stand-in
"""
from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, LlamaConfig, Qwen3Config

# The published configs' shapes (hidden sizes, layers, heads, vocabulary, tying); rotary scaling is left
# at its default because it costs nothing.
SHAPES = {
    "smollm2-135m": lambda: LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                        tie_word_embeddings=True),
    # a small model with Qwen3's vocabulary: where the loss's (tokens x vocabulary) tensors dominate
    "qwen3-vocab": lambda: Qwen3Config(vocab_size=151936, hidden_size=256, intermediate_size=768, num_hidden_layers=12,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                       max_position_embeddings=4096, tie_word_embeddings=True),
    "qwen3-4b": lambda: Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                                    num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                    max_position_embeddings=32768, tie_word_embeddings=True),
    "pythia-2.8b": lambda: GPTNeoXConfig(vocab_size=50304, hidden_size=2560, intermediate_size=10240,
                                         num_hidden_layers=32, num_attention_heads=32, rotary_pct=0.25,
                                         max_position_embeddings=2048, tie_word_embeddings=False),
    "llama-3.2-3b": lambda: LlamaConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192,
                                        num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                                        head_dim=128, max_position_embeddings=131072, tie_word_embeddings=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(SHAPES))
    parser.add_argument("--tokenizer", required=True, help="a tokenizer whose ids fit the model's vocabulary")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    config = SHAPES[args.model]()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if len(tokenizer) > config.vocab_size:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, {args.model} only {config.vocab_size}")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising 4B weights on a CPU is slow
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, args.dtype))
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.model} stand-in: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters -> {args.out}")


if __name__ == "__main__":
    main()

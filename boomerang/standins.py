"""Tiny, randomly initialised stand-ins for every hub model and dataset the paper presets name.

The paper presets (configs/*.yaml) load `Qwen/Qwen3-4B-Base`, the authors' released students, the Fig. 6
off-the-shelf pairs, The Pile, WikiText and the datasets behind lm-eval's task YAMLs by their hub names.
This machine (and CI) has no hub, so those code paths would only ever run on a GPU box. `build(hf_home)`
writes stand-ins under the exact hub names into a Hugging Face cache, so that the *unmodified* code resolves
offline once the process starts with

    HF_HOME=<hf_home>  HF_HUB_OFFLINE=1  HF_DATASETS_OFFLINE=1

(set before transformers, datasets or huggingface_hub is imported: they read the variables at import).
No pipeline code imports this module (only tests/rehearsal and scripts/gpu_check.sh do, and the package
does not import it at import time); it only writes files into a cache:

- models and plain repo files: the hub cache layout (`write_model_repo`), as `hf_hub_download` leaves it;
- datasets: the `datasets` arrow cache (`write_dataset`), as `load_dataset` leaves it after a first load.
  (A dataset repo written into the hub cache is refused offline by `datasets`, by design.)

The models keep what matters to the code that loads, prunes and patches them: the real number of layers,
each architecture's config quirks (Qwen3's explicit head_dim and q/k norms, Pythia's parallel residual and partial
rotary, Llama 3.2's "llama3" RoPE scaling and tied embeddings, BERT/DistilBERT's different parameter names),
the real special tokens and dtypes, config.json spelled as the hub repos spell it (transformers 4.x keys),
and students derived from their teachers' layers in the released `student_config.json` format. Everything
else is tiny (hidden 64), so `build` takes seconds. The data are generated English-like text with the real
schemas, enough for each task's preprocessing to run; the numbers it produces mean nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import datasets

__all__ = ["write_model_repo", "write_dataset", "build", "CAUSAL_MODELS", "MASKED_MODELS", "STUDENTS",
           "OFFSHELF_LAYERS", "LM_EVAL_TASKS", "MMLU_SUBJECTS", "MATH_SUBJECTS"]

SEED = 0
HIDDEN, HEADS, INTERMEDIATE = 64, 4, 128
NOISE = 0.01  # std of the noise added to copied teacher weights, so a student is not a mere subset

# repo id -> (model class name, number of layers) for everything `build` writes
CAUSAL_MODELS: dict[str, tuple[str, int]] = {
    "Qwen/Qwen3-4B-Base": ("Qwen3ForCausalLM", 36),
    "EleutherAI/pythia-2.8b": ("GPTNeoXForCausalLM", 32),
    "meta-llama/Llama-3.2-3B": ("LlamaForCausalLM", 28),
    "Harvard-DCML/boomerang-qwen3-2.3B": ("Qwen3ForCausalLM", 19),
    "Harvard-DCML/boomerang-pythia-1.6B": ("GPTNeoXForCausalLM", 17),
    "Harvard-DCML/boomerang-llama-3.2-1.9B": ("LlamaForCausalLM", 15),
    "openai-community/gpt2": ("GPT2LMHeadModel", 12),
    "distilbert/distilgpt2": ("GPT2LMHeadModel", 6),
}
MASKED_MODELS: dict[str, tuple[str, int]] = {
    "google-bert/bert-base-uncased": ("BertForMaskedLM", 12),
    "distilbert/distilbert-base-uncased": ("DistilBertForMaskedLM", 6),
}
# released student -> (teacher, teacher layers it copied). The pruned ones are the rest.
STUDENTS: dict[str, tuple[str, list[int]]] = {
    "Harvard-DCML/boomerang-qwen3-2.3B": ("Qwen/Qwen3-4B-Base", list(range(0, 35, 2)) + [35]),
    "Harvard-DCML/boomerang-pythia-1.6B": ("EleutherAI/pythia-2.8b", list(range(0, 31, 2)) + [31]),
    "Harvard-DCML/boomerang-llama-3.2-1.9B": ("meta-llama/Llama-3.2-3B", [0] + list(range(1, 28, 2))),
}
# Fig. 6: DistilBERT and DistilGPT2 were initialised from these teacher layers
OFFSHELF_LAYERS = [0, 2, 4, 7, 9, 11]

LM_EVAL_TASKS = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "winogrande", "race",
                 "mmlu", "rte", "gsm8k_cot", "ifeval", "hendrycks_math", "wikitext"]
MMLU_SUBJECTS = [
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions"]
MATH_SUBJECTS = {"algebra": "Algebra", "counting_and_probability": "Counting & Probability",
                 "geometry": "Geometry", "intermediate_algebra": "Intermediate Algebra",
                 "number_theory": "Number Theory", "prealgebra": "Prealgebra", "precalculus": "Precalculus"}


# --------------------------------------------------------------------------------------------------------------
# The two cache writers
# --------------------------------------------------------------------------------------------------------------

def write_model_repo(hf_home: Path, repo_id: str, files: dict[str, bytes] | Path) -> Path:
    """Write `files` as the hub cache would hold `repo_id` after a download, and return the snapshot folder.

    huggingface_hub has no public writer for its cache, so this lays it out by hand:
    `hub/models--<org>--<name>/blobs/<sha256>`, `snapshots/<commit>/<file>` as relative symlinks to the blobs
    (what `hf_hub_download` creates) and `refs/main` holding the commit, which offline resolution reads. The
    commit is the sha1 of the sorted (file name, content hash) pairs, so the same files give the same commit.
    `files` maps repo paths to contents, or is a folder whose files (recursively) are taken as they are.
    """
    if not isinstance(files, dict):
        root = Path(files)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    repo_dir = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    commit = hashlib.sha1("".join(f"{n}\0{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo_dir / "blobs" / hashes[name]
        if not blob.exists():
            blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def write_dataset(hf_home: Path, repo_id: str, config: str | None, splits: dict[str, list[dict]],
                  features: datasets.Features | None = None) -> Path:
    """Write `splits` as the `datasets` arrow cache holds `repo_id` (config `config`) after a first load.

    Offline, `load_dataset(repo_id, config)` (also with `streaming=True`, which reads the same files) falls
    back to `datasets/<org>___<snake_case name>/<config or "default">/0.0.0/<hash>/`, provided it holds
    `<snake_case name>-<split>.arrow` in arrow stream format and a `dataset_info.json` whose `config_name`
    is that folder's name and whose `splits` list every split; `load_dataset` without `split` returns every
    split written here. `features` gives the real schema (ClassLabel, nested lists, structs); without it
    the schema is inferred from the rows. Returns the folder written.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase

    *org, name = repo_id.split("/")
    snake = camelcase_to_snakecase(name)
    config_name = config or "default"
    if features is None:
        features = datasets.Dataset.from_list([row for rows in splits.values() for row in rows]).features
    fingerprint = json.dumps([repo_id, config_name, features.to_dict(), splits], sort_keys=True, default=str)
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    folder = Path(hf_home) / "datasets" / "___".join([*org, snake]) / config_name / "0.0.0" / digest
    folder.mkdir(parents=True, exist_ok=True)
    split_dict = datasets.SplitDict(dataset_name=snake)
    for split, rows in splits.items():
        with ArrowWriter(features=features, path=str(folder / f"{snake}-{split}.arrow")) as writer:
            for row in rows:
                writer.write(features.encode_example(row))
            num_examples, num_bytes = writer.finalize()
        split_dict.add(datasets.SplitInfo(name=split, num_bytes=num_bytes, num_examples=num_examples,
                                          dataset_name=snake))
    info = datasets.DatasetInfo(features=features, config_name=config_name, dataset_name=snake,
                                builder_name="parquet", version="0.0.0", splits=split_dict,
                                dataset_size=sum(s.num_bytes for s in split_dict.values()))
    info.write_to_directory(str(folder))
    return folder


# --------------------------------------------------------------------------------------------------------------
# English-like text
# --------------------------------------------------------------------------------------------------------------

_NOUNS = ("river house garden teacher village storm letter doctor market engine forest mountain window child "
          "ship farmer island bridge king city lamp road station song soldier harbour kitchen library museum "
          "machine planet leaf stone water plant animal student family winter summer light heat metal rock "
          "cloud field horse table paper country language history problem answer number").split()
_ADJS = ("old quiet bright small large green careful distant heavy early famous simple strong warm cold narrow "
         "ancient modern young dark long short happy important common different").split()
_VERBS = ("found built carried opened followed watched crossed painted visited described reached changed left "
          "joined moved saw heard kept wrote read needed used made gave took").split()
_ADVS = "slowly quickly carefully early later again together quietly often rarely".split()
_PREPS = "near behind across under beside towards over through".split()
_NAMES = "Anna Thomas Mary Henry Clara James Lucy Robert Emma George Alice Peter".split()
_PLACES = "London Paris York Boston Dublin Vienna Lisbon Oslo".split()


class _Text:
    """Seeded generator of English-like sentences, paragraphs and titles (a bag of simple templates)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, seq):
        return self.rng.choice(seq)

    def sentence(self) -> str:
        r, p = self.rng, self.pick
        templates = [
            lambda: f"the {p(_ADJS)} {p(_NOUNS)} {p(_VERBS)} the {p(_NOUNS)} {p(_PREPS)} the {p(_NOUNS)}",
            lambda: f"{p(_NAMES)} {p(_VERBS)} a {p(_ADJS)} {p(_NOUNS)} {p(_ADVS)}",
            lambda: f"in {r.randint(1700, 2020)} , {p(_NAMES)} {p(_VERBS)} the {p(_NOUNS)} of {p(_PLACES)}",
            lambda: f"when the {p(_NOUNS)} {p(_VERBS)} the {p(_NOUNS)} , it was {p(_ADJS)}",
            lambda: f"there were {r.randint(2, 90)} {p(_NOUNS)}s {p(_PREPS)} the {p(_ADJS)} {p(_NOUNS)}",
            lambda: f"she {p(_VERBS)} that the {p(_NOUNS)} was {p(_ADJS)} and {p(_ADJS)}",
            lambda: f"{p(_NAMES)} and {p(_NAMES)} {p(_VERBS)} the {p(_NOUNS)} in {p(_PLACES)} {p(_ADVS)}",
        ]
        s = self.pick(templates)()
        return s[0].upper() + s[1:] + self.pick([" .", " .", " .", " ?", " !"])

    def words(self, lo: int, hi: int) -> str:
        """Whitespace-tokenised sentences (wikitext style, " , " and " ."), lo..hi words."""
        target, out = self.rng.randint(lo, hi), []
        while sum(len(s.split()) for s in out) < target:
            out.append(self.sentence())
        return " ".join(out)

    def prose(self, lo: int, hi: int) -> str:
        """Ordinary prose (punctuation attached), lo..hi words."""
        return re.sub(r" ([,.?!])", r"\1", self.words(lo, hi))

    def title(self, n: int = 2) -> str:
        return " ".join(w.capitalize() for w in [self.pick(_ADJS)] + [self.pick(_NOUNS) for _ in range(n - 1)])


# --------------------------------------------------------------------------------------------------------------
# Tokenizers (trained in well under a second on the generated corpus)
# --------------------------------------------------------------------------------------------------------------

_BPE_VOCAB = 480   # byte-level: 256 bytes + a couple of hundred merges
_WORDPIECE_VOCAB = 420
_LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _corpus() -> list[str]:
    text = _Text(SEED + 1)
    lines = [text.prose(20, 60) for _ in range(1500)]
    # digits, arithmetic and LaTeX as in gsm8k / MATH prompts, so they get merges too
    lines += [f"{a} + {b} = {a + b} and {a} * {b} = {a * b}. The answer is {a + b}. #### {a * b}"
              for a, b in ((text.rng.randint(1, 99), text.rng.randint(1, 99)) for _ in range(300))]
    lines += [r"$\frac{1}{2}$ and $x^2 + 3x = \boxed{4}$ \sqrt{9} \left( \right)"] * 20
    return lines


def _byte_bpe(corpus: list[str], specials_first: list[str] = (), pre_tokenizer=None, **bpe):
    """A byte-level BPE trained on `corpus`; returns the `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(**bpe))
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=_BPE_VOCAB, special_tokens=list(specials_first), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return tok


def _vocab_merges(tok, specials_last: list[str] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    for s in specials_last:
        vocab[s] = len(vocab)
    return vocab, [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def _qwen3_tokenizer(corpus):
    """Qwen3 base: `<|endoftext|>` is eos and pad, no bos, special tokens after the ordinary vocabulary."""
    from transformers import Qwen2Tokenizer
    vocab, merges = _vocab_merges(_byte_bpe(corpus), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return Qwen2Tokenizer(vocab=vocab, merges=merges, bos_token=None, unk_token=None, eos_token="<|endoftext|>",
                          pad_token="<|endoftext|>", model_max_length=131072,
                          extra_special_tokens=["<|im_start|>", "<|im_end|>"])


def _pythia_tokenizer(corpus):
    """Pythia (GPT-NeoX): `<|endoftext|>` = 0 is bos, eos and unk, `<|padding|>` = 1."""
    from transformers import GPTNeoXTokenizer
    vocab, merges = _vocab_merges(_byte_bpe(corpus, ["<|endoftext|>", "<|padding|>"]))
    return GPTNeoXTokenizer(vocab=vocab, merges=merges)


def _gpt2_tokenizer(corpus):
    """GPT-2 and DistilGPT2: `<|endoftext|>` is the last token and bos, eos and unk; no pad."""
    from transformers import GPT2Tokenizer
    vocab, merges = _vocab_merges(_byte_bpe(corpus), ["<|endoftext|>"])
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)


def _llama3_tokenizer(corpus):
    """Llama 3.2: a tiktoken-style BPE in a plain `PreTrainedTokenizerFast`, bos `<|begin_of_text|>` prepended
    by the post-processor, eos `<|end_of_text|>`, special tokens after the ordinary vocabulary."""
    from tokenizers import Regex, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_LLAMA3_PATTERN), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = _byte_bpe(corpus, pre_tokenizer=pre, ignore_merges=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A:0", pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", model_max_length=131072)


def _bert_vocab(corpus) -> dict[str, int]:
    """An uncased WordPiece vocabulary laid out like bert-base-uncased's: [PAD] 0, [unused0..98], [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103, then every character, every character as a "##" continuation, and the
    most frequent words. Counted by hand rather than with the WordPiece trainer, whose ties fall in hash
    order and so change the vocabulary from run to run."""
    from collections import Counter
    from tokenizers import normalizers, pre_tokenizers
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for line in corpus for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for word in counts for c in word})
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    pieces = chars + [f"##{c}" for c in chars]
    pieces += words[:_WORDPIECE_VOCAB - len(head) - len(pieces)]
    return {t: i for i, t in enumerate(head + pieces)}


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------

def _pad_vocab(n: int, multiple: int = 64) -> int:
    """Qwen and Pythia pad the embedding past the tokenizer (151936 > 151669, 50304 > 50277)."""
    return -(-n // multiple) * multiple


def _hub_spelling(config: dict) -> dict:
    """The config.json keys as the hub repos spell them (written by transformers 4.x): `torch_dtype`,
    top-level `rope_theta` + `rope_scaling` (`rotary_pct` + `rotary_emb_base` for GPT-NeoX), where
    transformers 5 writes `dtype` and a `rope_parameters` dict. transformers 5 reads both spellings."""
    config = dict(config)
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    rope = config.pop("rope_parameters", None)
    if rope is not None:
        rope = dict(rope)
        if config.get("model_type") == "gpt_neox":
            config["rotary_pct"] = rope.pop("partial_rotary_factor", 1.0)
            config["rotary_emb_base"] = rope.pop("rope_theta")
        else:
            config["rope_theta"] = rope.pop("rope_theta")
            config["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    if config.get("model_type") == "qwen3":  # 4.51 wrote neither; all layers are full attention
        config.pop("layer_types", None)
    return dict(sorted(config.items()))


def _causal_configs(tokenizers: dict) -> dict[str, Callable[[int], Any]]:
    """Teacher architecture -> (number of layers -> tiny config with the architecture's real quirks)."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen3Config
    q, p, l, g = (tokenizers[k] for k in ("qwen3", "pythia", "llama", "gpt2"))
    return {
        # Qwen3-4B-Base: head_dim 128 != 2560 / 32, GQA 32/8, q/k RMSNorm (built in), tied, theta 1e6
        "qwen3": lambda n: Qwen3Config(
            vocab_size=_pad_vocab(len(q)), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=n,
            num_attention_heads=HEADS, num_key_value_heads=2, head_dim=32, max_position_embeddings=32768,
            max_window_layers=n, use_sliding_window=False, sliding_window=None, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
            bos_token_id=q.eos_token_id, eos_token_id=q.eos_token_id),
        # pythia-2.8b: parallel attention + MLP, rotary on a quarter of each head, untied, fp16 weights
        "pythia": lambda n: GPTNeoXConfig(
            vocab_size=_pad_vocab(len(p)), hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=n,
            num_attention_heads=HEADS, max_position_embeddings=2048, use_parallel_residual=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000, "partial_rotary_factor": 0.25},
            tie_word_embeddings=False, bos_token_id=p.bos_token_id, eos_token_id=p.eos_token_id),
        # Llama-3.2-3B: "llama3" RoPE scaling, GQA 24/8, tied embeddings, vocab = tokenizer size
        "llama": lambda n: LlamaConfig(
            vocab_size=len(l), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=n,
            num_attention_heads=HEADS, num_key_value_heads=2, head_dim=HIDDEN // HEADS,
            max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            bos_token_id=l.bos_token_id, eos_token_id=l.eos_token_id),
        # GPT-2: learned positions, vocab = tokenizer size, bos = eos = <|endoftext|>
        "gpt2": lambda n: GPT2Config(
            vocab_size=len(g), n_embd=HIDDEN, n_layer=n, n_head=HEADS, n_positions=1024,
            bos_token_id=g.eos_token_id, eos_token_id=g.eos_token_id),
    }


_LAYER_INDEX = re.compile(r"\.(layers|h|layer)\.(\d+)\.")


def _derive(teacher, student, kept: list[int], seed: int) -> None:
    """Fill `student` with the teacher's weights (student layer i <- teacher layer kept[i], everything else
    as is), then add seeded noise to every parameter, in place (tied parameters once)."""
    import torch
    source = teacher.state_dict()
    mapped = {k: source[_LAYER_INDEX.sub(lambda m: f".{m.group(1)}.{kept[int(m.group(2))]}.", k, count=1)]
              for k in student.state_dict()}
    student.load_state_dict(mapped)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(NOISE * torch.randn(param.shape, generator=generator, dtype=param.dtype))


# DistilBERT parameter name -> BERT parameter name
_DISTILBERT_LAYER = {"attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
                     "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
                     "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
                     "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm"}
_DISTILBERT_OTHER = {"distilbert.embeddings.word_embeddings": "bert.embeddings.word_embeddings",
                     "distilbert.embeddings.position_embeddings": "bert.embeddings.position_embeddings",
                     "distilbert.embeddings.LayerNorm": "bert.embeddings.LayerNorm",
                     "vocab_transform": "cls.predictions.transform.dense",
                     "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
                     "vocab_projector": "cls.predictions.decoder"}


def _distilbert_from_bert(bert, distil, seed: int) -> None:
    """DistilBERT was initialised from BERT layers 0, 2, 4, 7, 9, 11 (under other parameter names): do the
    same, with BERT's token-type-0 embedding folded into the (tied) word embeddings, as DistilBERT has no
    token types, then add seeded noise."""
    import torch
    source = bert.state_dict()
    names = {f"distilbert.transformer.layer.{i}.{a}": f"bert.encoder.layer.{t}.{b}"
             for i, t in enumerate(OFFSHELF_LAYERS) for a, b in _DISTILBERT_LAYER.items()} | _DISTILBERT_OTHER
    mapped = {}
    for key in distil.state_dict():
        stem, _, kind = key.rpartition(".")
        mapped[key] = source[f"{names[stem]}.{kind}"]
    words = source["bert.embeddings.word_embeddings.weight"] + source["bert.embeddings.token_type_embeddings.weight"][0]
    mapped["distilbert.embeddings.word_embeddings.weight"] = mapped["vocab_projector.weight"] = words
    distil.load_state_dict(mapped)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in distil.parameters():
            param.add_(NOISE * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def _save_repo(hf_home: Path, repo_id: str, model, tokenizer, dtype: str = "float32",
               tokenizer_class: str | None = None, extra_files: dict[str, bytes] | None = None) -> dict:
    """save_pretrained (safetensors, in the repo's real `dtype`) + the tokenizer, config.json respelled for
    the hub, into the cache. `tokenizer_class` overrides the class name tokenizer_config.json records."""
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        model.to(getattr(torch, dtype))
        model.config.dtype = getattr(torch, dtype)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config_path = Path(tmp) / "config.json"
        config = _hub_spelling(json.loads(config_path.read_text()))
        if config.get("torch_dtype") == "float32":  # the older float32 repos (GPT-2, BERT) do not record it
            del config["torch_dtype"]
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        if tokenizer_class:
            path = Path(tmp) / "tokenizer_config.json"
            path.write_text(json.dumps(json.loads(path.read_text()) | {"tokenizer_class": tokenizer_class},
                                       indent=2) + "\n")
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    files |= extra_files or {}
    snapshot = write_model_repo(hf_home, repo_id, files)
    return {"commit": snapshot.name, "files": sorted(files), "class": type(model).__name__,
            "num_layers": _num_layers(model.config), "dtype": dtype}


def _num_layers(config) -> int:
    for name in ("num_hidden_layers", "n_layer", "n_layers"):
        if hasattr(config, name):
            return getattr(config, name)
    raise AttributeError(config)


def _write_models(hf_home: Path, corpus: list[str]) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, BertConfig, BertForMaskedLM, BertTokenizer, DistilBertConfig,
                              DistilBertForMaskedLM, DistilBertTokenizer)
    tokenizers = {"qwen3": _qwen3_tokenizer(corpus), "pythia": _pythia_tokenizer(corpus),
                  "llama": _llama3_tokenizer(corpus), "gpt2": _gpt2_tokenizer(corpus)}
    configs = _causal_configs(tokenizers)
    written = {}
    teachers = {"qwen3": "Qwen/Qwen3-4B-Base", "pythia": "EleutherAI/pythia-2.8b",
                "llama": "meta-llama/Llama-3.2-3B", "gpt2": "openai-community/gpt2"}
    # the dtype each repo's weights have on the hub (students: as their teachers)
    dtypes = {"qwen3": "bfloat16", "pythia": "float16", "llama": "bfloat16", "gpt2": "float32"}
    tokenizer_classes = {"llama": "PreTrainedTokenizerFast"}  # what Llama 3.2's tokenizer_config.json says
    for seed, (arch, repo) in enumerate(teachers.items()):
        torch.manual_seed(SEED + seed)
        teacher = AutoModelForCausalLM.from_config(configs[arch](CAUSAL_MODELS[repo][1]), dtype=torch.float32)
        students = [(s, kept) for s, (t, kept) in STUDENTS.items() if t == repo]
        if arch == "gpt2":
            students = [("distilbert/distilgpt2", OFFSHELF_LAYERS)]
        for j, (student_repo, kept) in enumerate(students):
            student = AutoModelForCausalLM.from_config(configs[arch](len(kept)), dtype=torch.float32)
            _derive(teacher, student, kept, seed=100 + 10 * seed + j)
            extra = None
            if student_repo in STUDENTS:
                layers = {"copied_teacher_layers": sorted(kept),
                          "pruned_teacher_layers": sorted(set(range(CAUSAL_MODELS[repo][1])) - set(kept))}
                extra = {"student_config.json": (json.dumps(layers, indent=2) + "\n").encode()}
            written[student_repo] = _save_repo(hf_home, student_repo, student, tokenizers[arch], dtypes[arch],
                                               tokenizer_classes.get(arch), extra_files=extra)
        written[repo] = _save_repo(hf_home, repo, teacher, tokenizers[arch], dtypes[arch],
                                   tokenizer_classes.get(arch))

    vocab = _bert_vocab(corpus)
    bert_tok = BertTokenizer(vocab=vocab, model_max_length=512)
    distil_tok = DistilBertTokenizer(vocab=vocab, model_max_length=512)
    torch.manual_seed(SEED + 10)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=12,
                                      num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
                                      max_position_embeddings=512, pad_token_id=0))
    distil = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(vocab), dim=HIDDEN, n_layers=6, n_heads=HEADS,
                                                    hidden_dim=INTERMEDIATE, max_position_embeddings=512,
                                                    pad_token_id=0))
    _distilbert_from_bert(bert, distil, seed=200)
    written["google-bert/bert-base-uncased"] = _save_repo(hf_home, "google-bert/bert-base-uncased", bert, bert_tok)
    written["distilbert/distilbert-base-uncased"] = _save_repo(hf_home, "distilbert/distilbert-base-uncased",
                                                                distil, distil_tok)
    return dict(sorted(written.items()))


# --------------------------------------------------------------------------------------------------------------
# Datasets: rows with each real dataset's schema
# --------------------------------------------------------------------------------------------------------------

def _features():
    """The real schemas (as the hub's parquet exports declare them)."""
    from datasets import ClassLabel, Features, List, Value
    s, i32, i64 = Value("string"), Value("int32"), Value("int64")
    mc_choices = {"text": List(s), "label": List(s)}
    ifeval_kwargs = {"num_highlights": i64, "relation": s, "num_words": i64, "num_placeholders": i64,
                     "prompt_to_repeat": s, "num_bullets": i64, "section_spliter": s, "num_sections": i64,
                     "capital_relation": s, "capital_frequency": i64, "keywords": List(s), "num_paragraphs": i64,
                     "language": s, "let_relation": s, "letter": s, "let_frequency": i64, "end_phrase": s,
                     "forbidden_words": List(s), "keyword": s, "frequency": i64, "num_sentences": i64,
                     "postscript_marker": s, "first_word": s, "nth_paragraph": i64}
    return {
        "text": Features({"text": s}),
        "page": Features({"page": s}),
        "arc": Features({"id": s, "question": s, "choices": mc_choices, "answerKey": s}),
        "boolq": Features({"question": s, "passage": s, "idx": i32, "label": ClassLabel(names=["False", "True"])}),
        "hellaswag": Features({"ind": i32, "activity_label": s, "ctx_a": s, "ctx_b": s, "ctx": s,
                               "endings": List(s), "source_id": s, "split": s, "split_type": s, "label": s}),
        "openbookqa": Features({"id": s, "question_stem": s, "choices": mc_choices, "answerKey": s}),
        "piqa": Features({"goal": s, "sol1": s, "sol2": s, "label": ClassLabel(names=["0", "1"])}),
        "winogrande": Features({"sentence": s, "option1": s, "option2": s, "answer": s}),
        "race": Features({"article": s, "problems": s}),
        "mmlu": Features({"question": s, "subject": s, "choices": List(s),
                          "answer": ClassLabel(names=["A", "B", "C", "D"])}),
        "rte": Features({"sentence1": s, "sentence2": s,
                         "label": ClassLabel(names=["entailment", "not_entailment"]), "idx": i32}),
        "gsm8k": Features({"question": s, "answer": s}),
        "ifeval": Features({"key": i64, "prompt": s, "instruction_id_list": List(s),
                            "kwargs": List(ifeval_kwargs)}),
        "math": Features({"problem": s, "level": s, "type": s, "solution": s}),
    }


def _wiki_article(t: _Text) -> list[str]:
    """One WikiText article as its dataset rows (raw variant): title, sections, paragraphs, empty lines."""
    rows = ["", f" = {t.title(3)} = \n", ""]
    for section in range(t.rng.randint(1, 3)):
        if section:
            rows += [f" = = {t.title(2)} = = \n", ""]
        for _ in range(t.rng.randint(1, 3)):
            para = t.words(40, 120).replace(" old ", " old @-@ fashioned ", 1)
            if t.rng.random() < 0.5:  # the raw variants' number separators
                para += (f" About {t.rng.randint(1, 9)} @,@ {t.rng.randint(0, 999):03d} people {t.pick(_VERBS)} "
                         f"the {t.pick(_NOUNS)} , {t.rng.randint(1, 9)} @.@ {t.rng.randint(1, 9)} km away .")
            rows += [f" {para} \n", ""]
    return rows


def _wikitext(t: _Text, articles: dict[str, int]) -> dict[str, list[dict]]:
    return {split: [{"text": row} for _ in range(n) for row in _wiki_article(t)] for split, n in articles.items()}


def _wikitext_pages(t: _Text, pages: dict[str, int]) -> dict[str, list[dict]]:
    return {split: [{"page": "".join(r if r else "\n" for r in _wiki_article(t)[1:])} for _ in range(n)]
            for split, n in pages.items()}


def _letters(n: int, numeric: bool = False) -> list[str]:
    return [str(i + 1) for i in range(n)] if numeric else list("ABCDE"[:n])


def _arc(t: _Text, prefix: str, n: dict[str, int]) -> dict[str, list[dict]]:
    out = {}
    for split, count in n.items():
        rows = []
        for k in range(count):
            k_choices = 3 if k % 7 == 5 else 5 if k % 11 == 9 else 4
            labels = _letters(k_choices, numeric=(k % 5 == 3))  # a few real ARC items use 1-4
            texts = [f"the {t.pick(_ADJS)} {t.pick(_NOUNS)}" for _ in labels]
            rows.append({"id": f"{prefix}_{split}_{k:05d}",
                         "question": f"Which of these would most likely help a {t.pick(_NOUNS)} "
                                     f"{t.pick(['grow', 'move', 'stay warm', 'last longer'])}?",
                         "choices": {"text": texts, "label": labels}, "answerKey": t.pick(labels)})
        out[split] = rows
    return out


def _task_data(t: _Text) -> list[tuple[str, str | None, str, dict[str, list[dict]]]]:
    """(repo, config, feature key, splits) for every dataset the 14 lm-eval tasks load."""
    r, p = t.rng, t.pick
    data = []
    data.append(("allenai/ai2_arc", "ARC-Easy", "arc", _arc(t, "Mercury", {"train": 6, "validation": 4, "test": 6})))
    data.append(("allenai/ai2_arc", "ARC-Challenge", "arc",
                 _arc(t, "MCAS", {"train": 6, "validation": 4, "test": 6})))

    def boolq(n, test=False):
        return [{"question": f"is the {p(_NOUNS)} {p(_PREPS)} the {p(_NOUNS)}", "passage": t.prose(30, 70),
                 "idx": k, "label": -1 if test else r.randint(0, 1)} for k in range(n)]
    data.append(("aps/super_glue", "boolq", "boolq",
                 {"train": boolq(6), "validation": boolq(4), "test": boolq(4, test=True)}))

    def hellaswag(n, split):
        rows = []
        for k in range(n):
            wikihow = k % 2 == 1
            ctx_a, ctx_b = t.prose(10, 25), f"the {p(_NOUNS)}"
            if wikihow:
                ctx_a = f"[header] How to {p(_VERBS)} a {p(_NOUNS)} [title] {t.prose(5, 10)} [step] {ctx_a}"
                ctx_b = ""
            rows.append({"ind": 100 * k + 7, "activity_label": f"{p(_ADJS).capitalize()} {p(_NOUNS)}",
                         "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}".strip(),
                         "endings": [t.prose(5, 15) for _ in range(4)],
                         "source_id": f"{'wikihow' if wikihow else 'activitynet'}~{1000 + k}",
                         "split": split, "split_type": "indomain" if k % 3 else "zeroshot",
                         "label": "" if split == "test" else str(r.randint(0, 3))})
        return rows
    data.append(("Rowan/hellaswag", None, "hellaswag",
                 {"train": hellaswag(6, "train"), "validation": hellaswag(4, "val"), "test": hellaswag(4, "test")}))

    def obqa(n, split):
        return [{"id": f"{7 + k}-{split[:3]}", "question_stem": f"The {p(_NOUNS)} {p(_VERBS)} the {p(_NOUNS)} because",
                 "choices": {"text": [f"it was {p(_ADJS)}" for _ in range(4)], "label": list("ABCD")},
                 "answerKey": p("ABCD")} for k in range(n)]
    data.append(("allenai/openbookqa", "main", "openbookqa",
                 {"train": obqa(6, "train"), "validation": obqa(4, "validation"), "test": obqa(4, "test")}))

    def piqa(n, test=False):
        return [{"goal": f"How do I {p(_VERBS)} a {p(_ADJS)} {p(_NOUNS)}?", "sol1": t.prose(6, 15),
                 "sol2": t.prose(6, 15), "label": -1 if test else r.randint(0, 1)} for _ in range(n)]
    data.append(("baber/piqa", None, "piqa", {"train": piqa(6), "validation": piqa(4), "test": piqa(4, test=True)}))

    def winogrande(n, test=False):
        rows = []
        for _ in range(n):
            a, b = r.sample(_NAMES, 2)
            rows.append({"sentence": f"{a} {p(_VERBS)} the {p(_NOUNS)} for {b} because _ was {p(_ADJS)}.",
                         "option1": a, "option2": b, "answer": "" if test else p("12")})
        return rows
    data.append(("allenai/winogrande", "winogrande_xl", "winogrande",
                 {"train": winogrande(6), "validation": winogrande(4), "test": winogrande(4, test=True)}))

    def race(n):
        rows = []
        for k in range(n):
            problems = []
            for j in range(r.randint(2, 4)):
                fill = j % 2 == 1
                question = (f"The {p(_NOUNS)} was {p(_PREPS)} the {p(_NOUNS)}  _  ." if fill
                            else f"What did {p(_NAMES)} {p(['find', 'see', 'build'])}?")
                problems.append({"answer": p("ABCD"), "options": [f"the {p(_NOUNS)}" for _ in range(4)],
                                 "question": question})
            rows.append({"article": t.prose(80, 160), "problems": str(problems)})
        return rows
    data.append(("EleutherAI/race", "high", "race", {"test": race(4)}))

    def mmlu(subject, n):
        return [{"question": f"Which {p(_NOUNS)} is {p(_ADJS)} in {subject.replace('_', ' ')}?", "subject": subject,
                 "choices": [f"The {p(_NOUNS)}" for _ in range(4)], "answer": r.randint(0, 3)} for _ in range(n)]
    for subject in MMLU_SUBJECTS:
        data.append(("cais/mmlu", subject, "mmlu",
                     {"test": mmlu(subject, 3), "validation": mmlu(subject, 2), "dev": mmlu(subject, 5)}))

    def rte(n, test=False):
        return [{"sentence1": t.prose(15, 35), "sentence2": t.prose(5, 12),
                 "label": -1 if test else r.randint(0, 1), "idx": k} for k in range(n)]
    data.append(("nyu-mll/glue", "rte", "rte", {"train": rte(6), "validation": rte(4), "test": rte(4, test=True)}))

    def gsm8k(n):
        rows = []
        for _ in range(n):
            name, noun = p(_NAMES), p(_NOUNS)
            a, b, c = r.randint(3, 40), r.randint(2, 30), r.randint(2, 6)
            total = (a + b) * c
            rows.append({"question": f"{name} has {a} {noun}s and finds {b} more. Each {noun} is worth {c} dollars. "
                                     f"How many dollars are {name}'s {noun}s worth?",
                         "answer": f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {noun}s.\n"
                                   f"They are worth {a + b} * {c} = <<{a + b}*{c}={total}>>{total} dollars.\n"
                                   f"#### {total}"})
        return rows
    data.append(("openai/gsm8k", "main", "gsm8k", {"train": gsm8k(6), "test": gsm8k(4)}))

    data.append(("google/IFEval", None, "ifeval", {"train": _ifeval_rows(t)}))

    def math(subject, n):
        rows = []
        for k in range(n):
            a, b = r.randint(2, 30), r.randint(2, 30)
            problem, work, answer = [
                (f"If $x - {b} = {a}$, what is $x$?", f"Adding {b} to both sides, $x = {a} + {b}$", f"{a + b}"),
                (f"Write ${a} \\div {b}$ as a common fraction.", "Division is a fraction",
                 f"\\frac{{{a}}}{{{b}}}"),
                (f"Simplify $\\sqrt{{{a * a * b}}}$.", f"$\\sqrt{{{a * a * b}}} = \\sqrt{{{a}^2 \\cdot {b}}}$",
                 f"{a}\\sqrt{{{b}}}"),
                (f"The point $P$ lies {a} units right of and {b} units above the origin. Find $P$.",
                 "Reading off the coordinates", f"({a},{b})"),
            ][k % 4]
            rows.append({"problem": problem, "level": f"Level {r.randint(1, 5)}", "type": MATH_SUBJECTS[subject],
                         "solution": f"{work}, so the answer is $\\boxed{{{answer}}}$."})
        return rows
    for subject in MATH_SUBJECTS:
        data.append(("EleutherAI/hendrycks_math", subject, "math",
                     {"train": math(subject, 4), "test": math(subject, 4)}))

    data.append(("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "page",
                 _wikitext_pages(t, {"train": 6, "validation": 3, "test": 3})))
    return data


def _ifeval_rows(t: _Text) -> list[dict]:
    """IFEval prompts with instruction ids from lm-eval's registry. The second and last rows, like many real
    ones, need nltk's `punkt_tab` (counting sentences, tokenising words), so `limit=2` meets what a full run
    meets; the others need only `langdetect` and `immutabledict`."""
    keys = ["num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_bullets",
            "section_spliter", "num_sections", "capital_relation", "capital_frequency", "keywords",
            "num_paragraphs", "language", "let_relation", "letter", "let_frequency", "end_phrase",
            "forbidden_words", "keyword", "frequency", "num_sentences", "postscript_marker", "first_word",
            "nth_paragraph"]

    def kw(**given):
        return {k: given.get(k) for k in keys}
    rows = [
        (1000, f"Write a 300+ word summary of the history of the {t.pick(_NOUNS)} in {t.pick(_PLACES)}. Do not use "
               "any commas and highlight at least 3 sections that has titles in markdown format, for example "
               "*highlighted section part 1*, *highlighted section part 2*, *highlighted section part 3*.",
         ["punctuation:no_comma", "detectable_format:number_highlighted_sections", "length_constraints:number_words"],
         [kw(), kw(num_highlights=3), kw(relation="at least", num_words=300)]),
        (1001, f"Write a short story about a {t.pick(_ADJS)} {t.pick(_NOUNS)} in fewer than 6 sentences. "
               "Your ENTIRE response should be in English language, no other language is allowed.",
         ["length_constraints:number_sentences", "language:response_language"],
         [kw(relation="less than", num_sentences=6), kw(language="en")]),
        (1005, f"Write a letter to {t.pick(_NAMES)} about the {t.pick(_NOUNS)}. Your entire response should be in "
               "English, and in all lowercase letters. No capital letters are allowed.",
         ["change_case:english_lowercase", "language:response_language"], [kw(), kw(language="en")]),
        (1012, f"Describe the {t.pick(_NOUNS)} of {t.pick(_PLACES)}. Include the keywords 'river' and 'stone'. "
               "Wrap your entire response with double quotation marks.",
         ["keywords:existence", "startend:quotation"], [kw(keywords=["river", "stone"]), kw()]),
        (1019, "Write a poem about winter with a title wrapped in double angular brackets, i.e. <<title>>. "
               "At the end of your response, please explicitly add a postscript starting with P.S.",
         ["detectable_format:title", "detectable_content:postscript"], [kw(), kw(postscript_marker="P.S.")]),
        (1021, "Write an essay about a famous bridge in which words with all capital letters appear at least 2 "
               "times. Finish your response with this exact phrase Is there anything else I can help with?",
         ["change_case:capital_word_frequency", "startend:end_checker"],
         [kw(capital_relation="at least", capital_frequency=2),
          kw(end_phrase="Is there anything else I can help with?")]),
    ]
    return [{"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}
            for key, prompt, ids, kwargs in rows]


def _write_datasets(hf_home: Path) -> dict:
    features = _features()
    t = _Text(SEED + 2)
    data = [("EleutherAI/the_pile_deduplicated", None, "text",
             {"train": [{"text": "\n\n".join(t.prose(25, 65) for _ in range(t.rng.randint(2, 3)))}
                        for _ in range(600)]})]  # 600 documents of 50-200 words, to skip and shuffle
    data += [("Salesforce/wikitext", "wikitext-103-raw-v1", "text",
              _wikitext(t, {"train": 40, "validation": 12, "test": 12})),
             ("Salesforce/wikitext", "wikitext-2-raw-v1", "text",
              _wikitext(t, {"train": 20, "validation": 8, "test": 8}))]
    data += _task_data(t)
    written: dict[str, dict] = {}
    for repo, config, kind, splits in data:
        folder = write_dataset(hf_home, repo, config, splits, features[kind])
        written.setdefault(repo, {})[config or "default"] = {
            "hash": folder.name, "splits": {s: len(rows) for s, rows in splits.items()}}
    return dict(sorted(written.items()))


# --------------------------------------------------------------------------------------------------------------

def write_punkt_tab(nltk_data: Path) -> Path:
    """nltk's English sentence splitter as an untrained Punkt model (empty parameter files), where ifeval's
    code looks for `tokenizers/punkt_tab` before it would download the trained one."""
    english = Path(nltk_data) / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("")
    return english


def build(hf_home: Path) -> dict:
    """Write every stand-in (models with tokenizers, released students, datasets) into the HF cache at
    `hf_home`, and nltk's sentence splitter into `hf_home/nltk_data`; deterministic (seeded), a few seconds.
    Returns the manifest: per model repo its commit, files, class and layer count; per dataset repo and
    config its folder hash and split sizes."""
    hf_home = Path(hf_home)
    models = _write_models(hf_home, _corpus())
    write_punkt_tab(hf_home / "nltk_data")
    return {"hf_home": str(hf_home), "models": models, "datasets": _write_datasets(hf_home)}

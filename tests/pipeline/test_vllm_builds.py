"""Two β builds with sampling.engine=vllm in one process, as launcher=basic runs a sweep's
jobs: each build shuts its vLLM down when its rows are drawn, so the next one passes
vLLM's memory check (tests/helpers/fake_vllm refuses a second live engine, as vLLM does)."""

import dataclasses
import sys

import torch

from rdx.pipeline.offpolicy.artifacts import prepare
from tests.cli.test_config import compose_cfg
from tests.helpers import fake_vllm


def test_a_sweeps_two_vllm_builds_run_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setattr(fake_vllm.LLM, "instances", [])
    monkeypatch.setattr(fake_vllm.LLM, "live", [])
    base = compose_cfg(
        "experiment=smoke",
        f"cache_dir={tmp_path}",
        "behavior.pretrain_steps=10",
        "sampling.num_prefixes=16",  # × 2 samples: the smoke batch of 32
        "sampling.eval_prefixes=4",
    )
    # validate() refuses vllm off CUDA; the fake runs where the builds run here
    vllm = dataclasses.replace(base.sampling, engine="vllm", vllm_memory=0.4)
    built = []
    for attribute in ("positive", "negative"):  # prefix_pool=attribute: one β build each
        cfg = dataclasses.replace(base, attribute=attribute, sampling=vllm)
        built.append(prepare(cfg))
    assert len(fake_vllm.LLM.instances) == 2 and fake_vllm.LLM.live == []
    assert all(llm.shut_down for llm in fake_vllm.LLM.instances)
    assert {llm.kwargs["gpu_memory_utilization"] for llm in fake_vllm.LLM.instances} == {0.4}
    a, b = (p.sets[0].seqs.tokens for p in built)
    assert a.shape[0] == b.shape[0] == 16 * base.sampling.samples_per_prefix
    assert not torch.equal(a, b)  # each attribute's own prefixes and rows
    assert built[0].paths["trajectories"] != built[1].paths["trajectories"]

"""benchmarks.projection: stage costs against hand-computed values, the grids' counts from
the composed presets, gpu-check's JSON in place of the CPU-scaled inputs, the output rows."""

import dataclasses
import json

import pytest

from benchmarks import projection as pj

HOST = {k: (0.0, 1e-3) for k in pj.HOST_CPU}  # 1 ms per layer per call, whatever the call
M = pj.Model("m", params=1e9, trainable=1e9, layers=10)


def inputs(**kw) -> pj.Inputs:
    """Round numbers: 1 TFLOP/s at 50% MFU, 1 TB/s at 50%, 10 ms of host per call of M."""
    base = dict(
        gpus=2,
        peak_bf16=1e12,
        peak_fp32=1e12,
        hbm_bw=1e12,
        bw_eff=0.5,
        mfu_forward_cpu=0.5,
        mfu_train_cpu=0.5,
        ratio_mfu=1.0,
        host=HOST,
        ratio_host=1.0,
        process_s=1.0,
        cuda_init_s=0.0,
        load_bw=1e9,
        corpus_row_s=0.0,
        reward_texts={"d": 64},
        reward_tokens=10,
        reward_score_tokens=10,
        text_metrics_s=0.0,
    )
    return pj.Inputs(**{**base, **kw})


def small_grid(runs: int = 3) -> pj.Grid:
    shape = pj.RunShape(M, epochs=2, steps_per_epoch=5, measured_epochs=1, dataset="d")
    return pj.Grid(
        name="Table 1",
        runs=((shape, runs),),
        beta_builds=("d",),
        reward_builds=("d",),
        sample_sets=2,
        prefixes=10,
        samples_per_prefix=1,
        eval_prefixes=4,
        prefix_len=2,
        total_len=4,
        batch_size=10,
        sampling_batch=100,
        behavior=M,
        reward=pj.Model("r", params=1e8, trainable=1e8, layers=2, bytes_per_param=4.0),
        reward_epochs=2,
        reward_batch=32,
    )


def test_calls_are_the_slower_of_host_and_device():
    inp = inputs()
    # 100 rows: 2e11 FLOPs at 5e11 FLOP/s = 0.4 s, above 10 ms of host and 4 ms of weights
    assert pj.decode_step_s(M, 100, 0, inp) == pytest.approx(0.4)
    assert pj.decode_step_s(M, 1, 0, inp) == pytest.approx(0.010)  # 1 row: the host's 10 ms
    # memory-bound: no host, 2 GB of bf16 weights at 0.5 TB/s = 4 ms > 1 row's FLOPs
    assert pj.decode_step_s(M, 1, 0, inputs(host={k: (0, 0) for k in HOST})) == pytest.approx(0.004)
    # training: (2N + 4N_trained) × 100 tokens = 6e11 FLOPs at 5e11 FLOP/s
    assert pj.train_step_s(M, 10, 10, inp) == pytest.approx(1.2)
    frozen = dataclasses.replace(M, trainable=0.0)  # forward only: 2e11
    assert pj.train_step_s(frozen, 10, 10, inp) == pytest.approx(0.4)
    assert pj.forward_s(M, 10, 10, inp) == pytest.approx(0.4)
    assert pj.call_s(0.5, 1e12, 1e12) == 1.0 and pj.call_s(2.0, 1e12, 1e12) == 2.0


def test_stage_costs_of_a_small_grid_by_hand():
    g = small_grid(runs=3)
    inp = inputs(gpu_beta_sample_tok_s=12.0, gpu_beta_score_tok_s=50.0)
    s = pj.stage_gpu_s(g, inp, "hf")
    # β: 1 build × (2 sets × 10 rows + 4 held-out) × 2 new tokens at 12 tok/s
    assert s["β sampling"] == pytest.approx(24 * 2 / 12)
    # rescoring: 20 scored rows × 5 tokens (BOS + T) at 50 tok/s
    assert s["β likelihood rescoring"] == pytest.approx(20 * 5 / 50)
    # R scoring: one 64-row block of 10 tokens: 2 × 1e8 × 640 FLOPs at 5e11, above 2 ms of host
    assert s["R scoring"] == pytest.approx(0.256)
    # start-up of β's shard jobs: one per GPU, each loads β (2 GB) and R (0.4 GB) at 1 GB/s
    assert s["β job start-up"] == pytest.approx(2 * (1.0 + 2.4))
    # R: 2 epochs × 2 steps of 32 × 10 tokens, 6 × 1e8 × 320 FLOPs at 5e11 (above 2 ms)
    assert s["R fine-tune"] == pytest.approx(4 * 6e8 * 320 / 5e11)
    # training: 3 runs × 2 epochs × 5 steps of 10 rows × 5 tokens, 6e9 × 50 at 5e11
    assert s["π training"] == pytest.approx(3 * 10 * 6e9 * 50 / 5e11)
    # metric: 3 runs × 1 measured epoch × 5 steps × (2 greedy steps + one R forward); a step
    # of 10 rows: 2e10 FLOPs, 40 ms (above 10 ms of host, 4 ms of weights); R: 2e10, 40 ms
    assert s["metric greedy decode"] == pytest.approx(3 * 5 * (2 * 0.04 + 0.04))
    assert s["run start-up"] == pytest.approx(3 * (1.0 + (2e9 + 2e9 + 4e8) / 1e9))
    vllm = pj.stage_gpu_s(g, dataclasses.replace(inp, gpu_vllm_sample_tok_s=48.0), "vllm")
    assert vllm["β sampling"] == pytest.approx(1.0)
    assert vllm["β job start-up"] == pytest.approx(s["β job start-up"] + 2 * inp.vllm_startup_s)
    no_rescore = dataclasses.replace(inp, vllm_logprobs=True)
    assert pj.stage_gpu_s(g, no_rescore, "vllm")["β likelihood rescoring"] == 0.0
    with pytest.raises(ValueError, match="engine='sglang'"):
        pj.stage_gpu_s(g, inp, "sglang")


def test_r_fine_tune_counts_its_cap_its_precision_and_its_stop_checks():
    inp = inputs(peak_fp32=0.25e12)  # bf16 at 1 TFLOP/s, fp32 at a quarter of it
    g = small_grid()  # 64 sentences, 2 epochs at batch 32: 4 steps of 6e8 × 320 FLOPs
    fp32 = 4 * 6e8 * 320 / (0.25e12 * 0.5)
    assert pj.reward_finetune_s(g, inp, "d") == pytest.approx(fp32)
    capped = dataclasses.replace(g, reward_max_sentences=32, reward_bf16=True)
    assert pj.reward_sentences(capped, inp, "d") == 32
    assert pj.reward_finetune_s(capped, inp, "d") == pytest.approx(2 * 6e8 * 320 / 5e11)
    # a held-out check every step: 4 forwards of 512 rows × 10 tokens (2e8 × 5120 FLOPs)
    checked = dataclasses.replace(capped, reward_check_steps=1)
    check = 4 * 2e8 * 5120 / 5e11
    assert pj.reward_finetune_s(checked, inp, "d") == pytest.approx(
        2 * 6e8 * 320 / 5e11 + 2 * check
    )


def test_node_hours_pack_runs_longest_first():
    g, inp = small_grid(runs=3), inputs(gpu_beta_sample_tok_s=12.0, gpu_beta_score_tok_s=50.0)
    p = pj.project(g, inp, "hf")
    one = sum(pj.run_stage_s(g, g.runs[0][0], inp).values())
    assert p.hours["runs"] == pytest.approx(2 * one / 3600)  # 3 equal runs on 2 GPUs
    assert p.hours["total"] == pytest.approx(p.hours["β stage"] + p.hours["runs"])
    assert p.hours["total, R cached"] == pytest.approx(p.hours["total"] - p.hours["R fine-tune"])
    assert sum(p.share.values()) == pytest.approx(1.0)
    assert p.dominant == max(p.gpu_hours, key=p.gpu_hours.get)


@pytest.fixture(scope="module")
def grids():
    return pj.table1_grid(), pj.table2_grid()


def test_table1_grid_from_the_composed_presets(grids):
    t1, _ = grids
    assert t1.n_runs == 54  # 6 attributes × 9 arms × seed 0
    assert (t1.prefixes, t1.samples_per_prefix, t1.sample_sets) == (50000, 1, 5)
    assert (t1.prefix_len, t1.total_len, t1.batch_size, t1.eval_prefixes) == (4, 30, 64, 512)
    # sampling.prefix_pool=task: one β build per task serves its attributes' runs
    assert t1.beta_builds == ("agnews", "yelp") and t1.reward_builds == ("agnews", "yelp")
    [(yelp, n_yelp), (ag, n_ag)] = sorted(t1.runs, key=lambda r: r[0].dataset, reverse=True)
    assert (n_yelp, n_ag) == (18, 36)
    assert yelp.steps_per_epoch == 50000 // 64 == 781
    assert (yelp.epochs, yelp.measured_epochs) == (5, 1)  # epoch_metrics=last
    assert yelp.target.name == "gpt2" and 124e6 < yelp.target.params < 125e6
    assert 6.6e9 < t1.behavior.params < 6.7e9 and t1.reward.name == "bert"
    assert t1.beta_rows == 5 * 50000 + 512
    # R as the authors trained it (conf/reward/bert.yaml): batch 256, bf16, a stop, a cap
    assert (t1.reward_batch, t1.reward_bf16, t1.reward_max_sentences) == (256, True, 444000)
    assert t1.reward_check_steps == 200


def test_table2_grid_has_every_model_size(grids):
    _, t2 = grids
    assert t2.n_runs == 60  # 5 targets × 6 attributes × 2 arms
    models = {s.target.name: s.target for s, _ in t2.runs}
    assert set(models) == {"tiny", "gpt2", "gpt2-large", "xglm-1.7b", "opt-6.7b"}
    opt = models["opt-6.7b"]  # last_layer: the last block and the tied head train
    assert opt.trainable < 0.1 * opt.params and opt.layers == 32
    assert models["gpt2-large"].trainable == models["gpt2-large"].params


def test_gpu_json_overrides_the_cpu_scaled_inputs(tmp_path):
    data = {
        "device": "NVIDIA H100 80GB HBM3",
        "git": "abcdef123456",
        "steps": {
            "beta": {"sample_tokens_per_s": 30000.0, "score_tokens_per_s": 4e5},
            "train": {"step_s": 0.02, "mfu": 0.3},
        },
    }
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    inp = pj.with_gpu(inputs(), pj.load_gpu_json(path))
    assert (inp.gpu_beta_sample_tok_s, inp.gpu_beta_score_tok_s) == (30000.0, 4e5)
    assert inp.gpu_train_step_s == 0.02 and inp.mfu_train == 0.3
    assert inp.gpu_vllm_sample_tok_s is None  # no steps.beta_vllm: vLLM stays assumed
    assert inp.sources["gpu_beta_sample_tok_s"].startswith("gpu-check on NVIDIA H100")
    g = small_grid()
    assert pj.beta_tokens_per_s(g, inp, "hf") == 30000.0
    gpt2 = dataclasses.replace(g.runs[0][0], target=dataclasses.replace(M, name="gpt2"))
    assert pj.run_stage_s(g, gpt2, inp)["π training"] == pytest.approx(2 * 5 * 0.02)
    assert pj.load_gpu_json(tmp_path / "absent.json") is None
    assert pj.inputs(tmp_path / "absent.json").gpu_beta_sample_tok_s is None


def test_output_rows_and_the_goal_line():
    fast = inputs(gpus=8, gpu_beta_sample_tok_s=12.0, gpu_beta_score_tok_s=50.0)
    ps = [pj.project(small_grid(), fast, e) for e in pj.ENGINES]
    figs = pj.figures(ps, fast)
    assert [f.name for f in figs] == [
        "Table 1 at paper scale, hf, one 8×H100 node (projected)",
        "Table 1 at paper scale, vllm, one 8×H100 node (projected)",
    ]
    assert all(f.goal == "<= 1.5 h" and f.met is True and f.unit == "h" for f in figs)
    assert pj.goal_line(ps, fast).startswith("goal: Table 1 ≤ 1.5 h on one 8-GPU H100 node: met")
    slow = dataclasses.replace(fast, gpu_beta_sample_tok_s=1e-4)  # β alone: 5.6 GPU-days
    ps = [pj.project(small_grid(), slow, "hf")]
    assert pj.figures(ps, slow)[0].met is False
    assert ": NOT met (hf " in pj.goal_line(ps, slow)
    assert "GPU figures from gpu-check" in pj.figures(ps, slow)[0].note
    table = pj.format_projection(ps, 8)
    assert all(stage in table for stage in pj.STAGES) and "dominant stage" in table
    assert "Table 1 hf" in table.splitlines()[0]

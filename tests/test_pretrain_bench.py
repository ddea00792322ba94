"""bench_pretrain: both variants run in their own process, train the same maths, and the
JSON carries throughput, peak memory and the DeepSpeed/plain ratios."""
from benchmarks.bench_pretrain import bench_pretrain
from tiny_model import TINY


def test_bench_pretrain_smoke(capsys):
    out = bench_pretrain(steps=3, warmup=1, batch_size=1, views=1, size=32, model=TINY)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith('{"benchmark": "pretrain"')
    for variant in ("plain", "deepspeed"):
        r = out["results"][variant]
        assert r["samples_per_s"] > 0 and r["peak_mem_mib"] >= r["mem_before_training_mib"] > 0
    assert out["ratio_samples_per_s_deepspeed_over_plain"] > 0
    assert out["ratio_peak_mem_deepspeed_over_plain"] > 0
    # same initial weights, batches, optimizer, clipping and schedule: the same losses
    assert out["max_loss_diff"] < 1e-4

from jitrl_bench.cli import app

app(prog_name="jitrl-bench")

"""A CPU-bound function for the memory tuner (tests/test_observe_tune.py)."""

from squall import App

app = App("cpubound")


@app.function(memory_mb=1024)
def crunch(event):
    n, total = int(event["n"]), 0
    for i in range(n):
        total += i * i % 7
    return total

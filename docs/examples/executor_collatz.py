"""funcX Executor docs: a sweep of the Collatz conjecture over 1..100."""
import sys

from funcx import FuncXExecutor

tutorial_endpoint = sys.argv[1]


def collatz_steps(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


with FuncXExecutor(endpoint_id=tutorial_endpoint) as fxe:
    futures = {n: fxe.submit(collatz_steps, n) for n in range(1, 101)}
    results = {n: f.result() for n, f in futures.items()}

longest = max(results, key=results.get)
print(f"{longest} {results[longest]}")

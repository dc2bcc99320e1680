"""wazo-stt benchmark suite: speed, memory and responsiveness of the server, measured the way it is used.

Run it with ``python -m bench.run --model DIR`` (see ``docs/benchmarks.md``). Benchmarks are not tests: nothing
here asserts a time; each benchmark prints a table, writes JSON and says which goals were met.
"""

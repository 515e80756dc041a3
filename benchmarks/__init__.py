"""cardrenew benchmarks (issue 7): ``python -m benchmarks --out report.json`` from the repository root.

Not part of the test suite. Everything runs on temporary XDG directories and the software card;
the card is served to pcscd through vpcd only on a reader that shows no card.
"""

"""The headless AQPL research loop behind `aqpl simulate` (the paper's Table 1 and Figures 4-5).

- `config.py`: `SimulationConfig`, the methods (with the fine-tuning controls) and strategies.
- `loop.py`: `run_simulation`: the data, F_o and the oracle once per run; per seed the base methods
  and the paired query chains.
- `comparisons.py`: paired intervals over seeds and the bootstrap over seeds and test images.
- `diagnostics.py`: the paper's Corollary 2.1 on the oracle's answers.
- `report.py`: the summaries over seeds, results.json, results.md and the plots.

This file imports nothing, so `comparisons` can be used without loading torch.
"""

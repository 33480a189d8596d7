"""Pure PyTorch + numpy core of AQPL: datasets, noise, models, training, scoring, strategies, corruptions."""

"""The names of the worker's jobs, for both sides: the API sends jobs by name (it never imports the
worker), the worker registers its functions under them. A job's arguments are ids, nothing more."""

from typing import Final

IMPORT_DATASET: Final = "datasets.import"  # (project_id)
PRETRAIN: Final = "training.pretrain"  # (project_id)
SCORE: Final = "scoring.score"  # (round_id, start, stop): one shard of the training examples
AGGREGATE: Final = "rounds.aggregate"  # (round_id)
FINETUNE: Final = "training.finetune"  # (round_id)
EVALUATE: Final = "evaluation.evaluate"  # (project_id, round_number): round 0 is the pretrained model
PING: Final = "system.ping"  # (token): a worker took a message and reached the database
WEBHOOK_DELIVER: Final = "webhooks.deliver"  # (delivery_id): one attempt at one webhook delivery

"""semrec.encoder: data loading, graph recommenders, trainer, evaluator and the training CLI."""

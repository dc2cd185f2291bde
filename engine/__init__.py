"""Library code the command-line tools share: environment report, metrics, flow estimators, training."""

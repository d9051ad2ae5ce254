"""Federation layer: the Method base that owns the round loop, FedAvg aggregation, client sampling."""

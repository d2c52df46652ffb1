"""Windows workload identity: RunAsUserName validation, GMSA credential specs."""

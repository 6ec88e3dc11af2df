"""What training and inference both do to a slice before the network sees it: intensity normalisation
(`normalization`, numpy only) and resampling to the model's spacing (`resampling`)."""

"""The training recipe beyond the sparse masks: the unknown-aware K+1 loss and its alpha schedule
(:mod:`.losses`) and weight averaging with a BatchNorm refresh (:mod:`.averaging`)."""

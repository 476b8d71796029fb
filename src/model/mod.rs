//! GPT-2 model (issue 3): config, flat weights, kernels, TrainingContext. Knows nothing of threads or atomics.

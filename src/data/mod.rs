//! Data path (issue 3): byte tokenizer, corpora, built-in Markov corpus, seeded sampler. Knows nothing of threads or models.

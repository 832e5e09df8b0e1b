"""The steps of a training run, one module each; training.pipeline runs them in order.

    config        TrainConfig and its epoch presets, the dataset's adjustments
    runtime       thread settings (OMP wait policy, torch threads), version and seed at start
    runner        Steps: seconds per step, the progress lines
    features      vocabularies, encoded events, training examples, held-out rows
    two_tower     the retrieval model
    ranker        the ranker (hard / sampled / history negatives)
    rating        the explicit-feedback rating model
    evaluate      the manifest's validation metrics
    content       the content encoder (item text -> tower space)
    user_value    the user-value model's events and manifest section
    publish       export + parity -> FAISS index -> tables -> manifest: a published bundle
                  (shared with bench.synthetic_bundle)
    manifest      the manifest's data and training sections

Importing any of these sets nothing: the commands that start training call
runtime.prefer_passive_omp() before torch loads.
"""

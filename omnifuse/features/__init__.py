"""Stage 1: frozen encoders that turn raw modalities into cached embeddings (HDF5, one per modality)."""

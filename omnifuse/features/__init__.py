"""Stage 1: frozen encoders turn raw inputs into cached embeddings (HDF5, one cache per modality).

One module per kind of input (``setup()`` builds its reader and encoder), named here without importing
torch so that the workflow can hash each modality's code on its own (:mod:`omnifuse.workflow.code`).
"""

INPUT_MODULES = {
    "cxr": "omnifuse.features.cxr",
    "rep": "omnifuse.features.rep",
    "ct": "omnifuse.features.volume",
    "pet": "omnifuse.features.volume",
}

"""OmniFuse: multimodal disease prediction on low-quality medical data.

A reproducible implementation of Wu et al., "OmniFuse: A general modality fusion framework for
multi-modality learning on low-quality medical data", Information Fusion 117 (2025).
"""

__version__ = "0.1.0"

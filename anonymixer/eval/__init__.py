"""Biometric evaluation: does a protected face still work for recognition, and does it protect?

``metrics`` (plain NumPy: EER, ROC/DET, AUC, TAR@FAR, PSR, ASR, linkability), ``fr`` (face
recognition systems we did not write), ``faces`` (the evaluation set), ``protocols`` (baseline,
utility, protection, unlinkability, irreversibility, template stability) and ``report``.
"""

from .metrics import (EER, ROC, Linkability, OperatingPoint, auc, det, eer, linkability, roc,
                      summarize, tar_at_far, verification_metrics)

__all__ = ["EER", "ROC", "Linkability", "OperatingPoint", "auc", "det", "eer", "linkability", "roc",
           "summarize", "tar_at_far", "verification_metrics"]

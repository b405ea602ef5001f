"""sparseshift representations: weakly supervised learners, their shared nets, one training loop
and the metrics.

Learners (:mod:`~sparseshift.representations.registry`): beta-VAE (Higgins et al. 2017),
Ada-GVAE and Ada-ML-VAE (Locatello et al. 2020), the Neural Wave Machine (Keller & Welling 2023)
and Slot Attention (Locatello et al. 2020), plus any user encoder through
:mod:`~sparseshift.representations.external`. They train on pairs of frames from a dataset file
and write safetensors checkpoints with their resolved config; the metrics (DCI, MIG, probes, the
OOD proxy task) read only those checkpoints and datasets.
"""

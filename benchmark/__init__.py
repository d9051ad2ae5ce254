"""sfprompt-bench: a reproducibility benchmark for split-federated prompt fine-tuning of ViTs.

Reproduces SFPrompt (Cao, Zhu, Gong, "SFPrompt: Communication-Efficient Split Federated Fine-Tuning for
Large Pre-Trained Models over Resource-Limited Devices", arXiv 2407.17533) against FedAvg full
fine-tuning, FedPrompt and SplitFed (SFL-V1/V2), measuring accuracy, client FLOPs and communication.
"""

__version__ = "0.1.0"

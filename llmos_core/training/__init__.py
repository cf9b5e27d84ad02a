"""Fine-tuning: data (load, check, tokenize, split), params (the knobs and presets), estimate (memory,
time, cost), model (device, precision, loading with LoRA), callback (Trainer -> metrics, Stop, NaN),
checkpoints (which are whole), trainer (one run with transformers' Trainer), job (the scheduler's contract)."""

"""Fine-tuning: data (load, check, tokenize, split), params (the knobs and presets), estimate (memory,
time, cost), trainer (transformers' Trainer with LoRA or full weights), job (the scheduler's contract)."""

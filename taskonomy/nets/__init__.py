"""The networks: encoders and heads (``models``), a task's data as tensors (``data``), the one training
loop with its checkpoints (``train``) and the sample sheets of predictions (``samples``)."""

"""Training and fine-tuning: the training data pipeline (`data`), the optimisation loop (`loop`), the card a
trained model gets (`card`), fine-tuning on exported corrections (`finetune`), the loss (`losses`) and
multi-process training (`distributed`). The only package that imports MONAI's training parts."""

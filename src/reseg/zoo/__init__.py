"""The model zoo: model cards (`cards`), the catalogue of installed models (`catalogue`, torch-free), and the
weights that turn a card into a ready network (`weights`)."""

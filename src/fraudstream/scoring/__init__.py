"""The models step: a bundle's models compiled for serving, scoring a batch's feature rows into one
fraud probability per row and the contributions that explain it."""
